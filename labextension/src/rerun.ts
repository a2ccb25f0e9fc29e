/**
 * A re-run drives the cells of its notebook, as a run from the notebook's toolbar does, from
 * wherever it was started (a job view, the Jobs panel): the open notebook's cells follow the new
 * job; a notebook that is not open is opened first, then followed once its run exists.
 */

import { PathExt } from '@jupyterlab/coreutils';
import type { IJob } from './tokens';

/** The part of a notebook's run a re-run needs: show a job in its cells from its start. */
export interface ICellRun {
  start(job: IJob): Promise<void>;
}

/** How Lab finds, checks and opens a job's notebook (jobplugin.ts gives the real ones). */
export interface INotebookOpener {
  /** The run of the open notebook at `path`, if it is open. */
  find(path: string): ICellRun | null;
  /** Whether the file at `path` is there to open. */
  exists(path: string): Promise<boolean>;
  /** Open the notebook at `path` in the main area, beside the widget `ref` when given. */
  open(path: string, ref?: string): Promise<void>;
  /** The run of the notebook at `path` once it registers; null when none did in time. */
  whenRun(path: string): Promise<ICellRun | null>;
}

/** Whether a job has a notebook of its own to show it (a `%%remote` cell job has not). */
export function hasNotebook(job: Pick<IJob, 'notebook'>): boolean {
  return job.notebook.endsWith('.ipynb');
}

/**
 * Show `job` (a re-run just submitted) in its notebook's cells, opening the notebook beside
 * `ref` if it is not open. Answers null once the cells follow the job, else a sentence saying
 * why they do not (the job itself runs either way).
 */
export async function driveCells(
  job: IJob,
  opener: INotebookOpener,
  ref?: string
): Promise<string | null> {
  if (!hasNotebook(job) || job.sweep) {
    return null; // a sweep's runs are its children: no cells follow the sweep itself
  }
  const path = job.notebook;
  let run = opener.find(path);
  if (!run) {
    let there = false;
    try {
      there = await opener.exists(path);
    } catch {
      there = false;
    }
    if (!there) {
      return (
        `The notebook ${path} no longer exists, so no cells show job ${job.id}; ` +
        'the job runs all the same, and its outputs are here and in its artifacts.'
      );
    }
    try {
      await opener.open(path, ref);
    } catch (error: any) {
      return (
        `Could not open ${path} to show job ${job.id} in its cells: ` +
        `${String(error?.message ?? error)}. The job runs all the same.`
      );
    }
    run = await opener.whenRun(path);
    if (!run) {
      return (
        `${path} was opened, but its cells could not follow job ${job.id}; ` +
        'the job runs all the same, and its outputs are here and in its artifacts.'
      );
    }
  }
  await run.start(job);
  return null;
}

/** How long a re-run waits for the notebook it opened to be ready to follow the job. */
export const OPEN_NOTEBOOK_TIMEOUT_MS = 120_000;

/** What `labOpener` uses of the application (a JupyterFrontEnd has it). */
export interface ILabLike {
  commands: { execute(id: string, args?: any): Promise<any> };
  serviceManager: {
    contents: { get(path: string, options?: { type?: string; content?: boolean }): Promise<any> };
  };
}

/**
 * Lab's way to a job's notebook: the open notebook's run (`runs.find`), or the file opened with
 * the document manager, as a double click in the file browser would, beside the job's view
 * (which keeps the focus: both stay in sight); `runs.when` waits for the opened one's run.
 */
export function labOpener(
  app: ILabLike,
  runs: {
    find(path: string): ICellRun | null;
    when(path: string, timeoutMs: number): Promise<ICellRun | null>;
  },
  timeoutMs = OPEN_NOTEBOOK_TIMEOUT_MS
): INotebookOpener {
  return {
    find: path => runs.find(path),
    exists: async path => {
      // List the folder rather than ask for the file: a missing file would log a 404.
      const listing = await app.serviceManager.contents.get(PathExt.dirname(path), {
        type: 'directory',
        content: true
      });
      const name = PathExt.basename(path);
      return ((listing?.content ?? []) as { name: string; type: string }[]).some(
        item => item.name === name && item.type === 'notebook'
      );
    },
    open: async (path, ref) => {
      const options = ref ? { mode: 'split-left', ref, activate: false } : {};
      await app.commands.execute('docmanager:open', { path, options });
    },
    whenRun: path => runs.when(path, timeoutMs)
  };
}
