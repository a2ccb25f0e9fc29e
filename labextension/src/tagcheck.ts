/**
 * What a notebook's cell tags say, as the server reads them (`POST tags/check`, over
 * jupyter_ext/notebook/tags.py, quantity.py and plan.py). The Lab keeps no copy of the tag
 * grammar: the cell chips, the step editor and a run's cells read the server's answer, asked
 * for through a `TagChecker` (debounced, one request in flight, stale answers dropped).
 */

import { Signal } from '@lumino/signaling';

/** One problem of the notebook: its words name the cell ("cell 4") and the tag. */
export interface IProblem {
  message: string;
  /** 0-based index of the cell (null: the notebook's metadata). */
  cell: number | null;
  step: string | null;
  tag: string | null;
}

export type Role = 'step' | 'imports' | 'functions' | 'parameters' | 'skip' | 'injected';

/** One cell, as the server read it. */
export interface ICellInfo {
  index: number;
  /** The cell's tags (null: not a code cell). */
  tags: string[] | null;
  /** A role of its own (null: the cell continues the block above it). */
  role: Role | null;
  /** The step this cell belongs to (null for prelude/parameters/skipped cells). */
  step: string | null;
  /** Whether the cell carries the step:/block: tag of `step`. */
  opens: boolean;
  problems: IProblem[];
}

export const SETTING_NAMES = ['gpu', 'memory', 'cpu', 'image', 'timeout', 'retries'] as const;
export type SettingName = (typeof SETTING_NAMES)[number];

/** One step, as the server read it. */
export interface IStepInfo {
  name: string;
  first_cell: number;
  /** Cells that carry the step:/block: tag of this step. */
  openers: number[];
  /** Every code cell of the step. */
  cells: number[];
  metrics_cells: number[];
  /** As tagged, unknown names included (those are problems). */
  after: string[];
  /** gpu/memory/cpu/image/timeout/retries as the tags wrote them. */
  settings: Partial<Record<SettingName, string>>;
  limits: { [key: string]: string };
}

/** The fields of the step editor's form, in the order it shows them. */
export const FORM_FIELDS = ['name', 'after', ...SETTING_NAMES] as const;
export type FormField = (typeof FORM_FIELDS)[number];
export type IStepForm = Record<FormField, string>;
export type FormErrors = Partial<Record<FormField, string>>;

/** What the server answers for an edit: the form's errors, or the tags saving writes. */
export interface IEditResult {
  errors: FormErrors;
  changes: { cell: number; tags: string[] }[];
}

/** The server's answer: every cell, every step, every problem. */
export interface INotebookSteps {
  /** No step tags: the notebook runs as one step, `main`. */
  single: boolean;
  cells: ICellInfo[];
  steps: IStepInfo[];
  edges: { source: string; target: string }[];
  problems: IProblem[];
  warnings: { cell?: number | null; step?: string | null; message: string }[];
  parameters_cells: number[];
  prelude_cells: number[];
  skipped_cells: number[];
  edit: IEditResult | null;
}

/** A cell as the check sends it (nbformat's shape; only the type and tags are read). */
export interface ICheckCell {
  cell_type: string;
  metadata: { tags?: unknown };
}

/** The body of `POST tags/check`. */
export interface ITagCheckRequest {
  cells: ICheckCell[];
  metadata?: { [key: string]: unknown };
  edit?: { cell: number; form: IStepForm } | { cell: number; remove: true };
}

/** The step called `name`, if the notebook has it. */
export function stepNamed(nb: INotebookSteps, name: string | null): IStepInfo | undefined {
  return name === null ? undefined : nb.steps.find(s => s.name === name);
}

/** The form for the step that cell `index` opens (or an empty one for a new step there). */
export function formFor(nb: INotebookSteps, index: number): IStepForm {
  const cell = nb.cells[index];
  const step = cell?.opens ? stepNamed(nb, cell.step) : undefined;
  const s = step?.settings ?? {};
  return {
    name: step?.name ?? '',
    after: (step?.after ?? []).join(', '),
    gpu: s.gpu ?? '',
    memory: s.memory ?? '',
    cpu: s.cpu ?? '',
    image: s.image ?? '',
    timeout: s.timeout ?? '',
    retries: s.retries ?? ''
  };
}

/** Where a check stands: an answer is on its way, the last answer is current, or it failed. */
export type CheckState = 'waiting' | 'ready' | 'failed';

/**
 * Asks the server about the latest request only: `request()` waits `delayMs` after the last
 * call before sending; while one request is in flight no other is sent (the latest waiting
 * one goes when it returns); an answer to anything but the latest request is dropped.
 */
export class TagChecker<Req, Res> {
  /** Emitted when `state`, `result` or `error` changed. */
  readonly changed = new Signal<this, void>(this);
  state: CheckState = 'ready';
  result: Res | null = null;
  /** Why the last check failed (the server could not be reached, or refused it). */
  error = '';
  private latest: Req | null = null;
  private generation = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight = false;
  private disposed = false;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly send: (request: Req) => Promise<Res>,
    readonly delayMs = 300
  ) {}

  /** Ask about `request`, `delayMs` after the last call (earlier requests are forgotten). */
  request(request: Req): void {
    if (this.disposed) {
      return;
    }
    this.latest = request;
    this.generation++;
    this.setState('waiting');
    if (this.timer !== null) {
      clearTimeout(this.timer);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.delayMs);
  }

  /** Ask about `request` now (no delay) and resolve with its answer; rejects if it failed. */
  async now(request: Req): Promise<Res> {
    this.request(request);
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    void this.flush();
    await this.settled();
    if (this.state === 'failed' || this.result === null) {
      throw new Error(this.error || 'the tag check did not answer');
    }
    return this.result;
  }

  /** Resolves once no request is waiting or in flight. */
  settled(): Promise<void> {
    if (this.state !== 'waiting' || this.disposed) {
      return Promise.resolve();
    }
    return new Promise(resolve => this.waiters.push(resolve));
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
    }
    Signal.clearData(this);
    this.release();
  }

  private async flush(): Promise<void> {
    if (this.inFlight || this.disposed || this.latest === null) {
      return; // the one in flight sends the latest request when it returns
    }
    const generation = this.generation;
    this.inFlight = true;
    let answer: Res | null = null;
    let failure = '';
    try {
      answer = await this.send(this.latest);
    } catch (err) {
      failure = (err as Error)?.message || String(err);
    }
    this.inFlight = false;
    if (this.disposed) {
      return;
    }
    if (generation !== this.generation) {
      // Stale: the request changed while this one was out. Send the latest unless its
      // delay is still running (then the timer sends it).
      if (this.timer === null) {
        void this.flush();
      }
      return;
    }
    if (failure) {
      this.error = failure;
      this.setState('failed');
    } else {
      this.result = answer;
      this.error = '';
      this.setState('ready');
    }
    this.release();
  }

  private setState(state: CheckState): void {
    this.state = state;
    this.changed.emit();
  }

  private release(): void {
    const waiters = this.waiters;
    this.waiters = [];
    waiters.forEach(resolve => resolve());
  }
}

/** Words for a check that failed: the server is the one that knows the tag grammar. */
export function checkFailedText(error: string): string {
  return `The server could not check the tags (${error}); they are checked again on the next edit.`;
}
