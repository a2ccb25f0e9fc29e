/**
 * The open notebooks' runs, found by the notebook's path: a re-run from a job view or the
 * Jobs panel drives the cells of its notebook through the run registered here, and waits for
 * one to register when it had to open the notebook first.
 */

/** What the registry needs of a run: whether it is gone, and its notebook's path. */
export interface IRegisteredRun {
  readonly isDisposed: boolean;
  readonly context: { readonly localPath: string };
}

/** A path as the server and the document manager may spell it: no leading `./` or `/`. */
export function samePath(a: string, b: string): boolean {
  const norm = (p: string) => p.replace(/^(\.\/|\/)+/, '');
  return norm(a) === norm(b);
}

export class RunRegistry<T extends IRegisteredRun> {
  private readonly runs = new Set<T>();
  private readonly waiters = new Set<{ path: string; resolve: (run: T | null) => void }>();

  /** A notebook's run came to be: it is found from now on, and whoever waited for it has it. */
  add(run: T): void {
    this.runs.add(run);
    for (const waiter of [...this.waiters]) {
      if (samePath(waiter.path, run.context.localPath)) {
        this.waiters.delete(waiter);
        waiter.resolve(run);
      }
    }
  }

  delete(run: T): void {
    this.runs.delete(run);
  }

  /** The live run of the notebook at `path` (a job's `notebook`), if it is open. */
  find(path: string): T | null {
    for (const run of this.runs) {
      if (!run.isDisposed && samePath(run.context.localPath, path)) {
        return run;
      }
    }
    return null;
  }

  /**
   * The run of the notebook at `path`: at once when it is open, else as soon as one registers;
   * null when none did within `timeoutMs`.
   */
  when(path: string, timeoutMs: number): Promise<T | null> {
    const found = this.find(path);
    if (found) {
      return Promise.resolve(found);
    }
    return new Promise(resolve => {
      const waiter = {
        path,
        resolve: (run: T | null) => {
          clearTimeout(timer);
          resolve(run);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(null);
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }
}
