/**
 * A job's events -> the notebook's cells: outputs land in the cell that produced them, each
 * cell knows its state (queued, running, succeeded, failed...), and errors show in the words
 * the server made for their reason code (docs/events.md), never re-read here.
 *
 * Pure: the notebook is reached through `ICellSink`, and everything needed to resume after
 * a reload (the job, the last applied seq, pending clears, display ids) is in `IRunRecord`,
 * a JSON object the caller keeps in the notebook's metadata next to the outputs it explains.
 */

import type { INotebookSteps } from './tagcheck';
import { type IEvent, type Reason, reasonOf, type Status } from './tokens';

/** The notebook's metadata key holding the record of the job whose outputs the cells show. */
export const RUN_METADATA_KEY = 'jupyter_ext_run';

/** One message shown on a cell: an error (the step failed here) or a warning (it waits). */
export interface ICellMessage {
  kind: 'error' | 'warning';
  text: string;
  /** Why, as a code (docs/events.md), when the server gave one: what styling keys on. */
  reason?: Reason;
}

/** Everything needed to go on applying a job's events where the last page load stopped. */
export interface IRunRecord {
  job: string;
  /** The seq of the last event applied to the cells. */
  seq: number;
  /** Cell ids of the notebook as submitted, by index (events name cells by id and index). */
  ids: (string | null)[];
  /** Cell indices of each step, as submitted. */
  steps: { [step: string]: number[] };
  /** Cell id -> state. */
  states: { [cell: string]: Status };
  /** Cell id -> the message shown on it. */
  messages: { [cell: string]: ICellMessage };
  /** Cells whose outputs go on the next output (clear_output(wait=True)). */
  pendingClear: string[];
  /** display_id -> [cell id, output index] of the outputs showing it. */
  displays: { [displayId: string]: [string, number][] };
  /** job.end was applied: nothing more will come. */
  done: boolean;
  /**
   * The execution count shown last. Each step runs in a kernel of its own, so the kernels'
   * counts restart per step ([4], [5], [6], [5]); the cells show their order of execution in
   * this run instead, as `cell.start` events arrive: [1], [2], [3], [4].
   */
  count?: number;
  /** Cell id -> the count given at its `cell.start`, shown at its `cell.end`. */
  counts?: { [cell: string]: number };
  /** The parameters the job was given (the values that differ from the notebook's defaults). */
  parameters?: { [name: string]: any };
  /** papermill's injected-parameters cell as the job ran it (its source), once it ran. */
  injected?: string | null;
  /** Steps of the job reused from an earlier job (a re-run from a later step): not run again. */
  reused?: string[];
  /**
   * Steps the cache satisfied (`step.cached`): the earlier run whose outputs their cells show
   * (replayed into this job's events), as the cells' "cached from job X" chip says.
   */
  cached?: { [step: string]: { job: string; step: string; attempt: number } };
}

/** The notebook, as the mapping needs it. */
export interface ICellSink {
  /** Whether the notebook still has a cell with this id. */
  has(id: string): boolean;
  /** The id of the cell now at `index` (null when there is none). */
  idAt(index: number): string | null;
  clear(id: string): void;
  /** Append an output (consecutive streams merge, as in a local run); answers its index. */
  append(id: string, output: { [key: string]: any }): number;
  replace(id: string, index: number, output: { [key: string]: any }): void;
  setExecutionCount(id: string, count: number | null): void;
}

export type ApplyResult = 'applied' | 'duplicate' | 'gap';

/** What a record needs to know about the job beside its steps' cells. */
export interface IRecordOptions {
  /** The parameters the job was given. */
  parameters?: { [name: string]: any };
  /** Steps reused from an earlier job: their cells are not run, so they keep what they show. */
  reused?: string[];
}

/** A record for a job just submitted: its cells queued (those of reused steps: succeeded). */
export function newRecord(
  job: string,
  ids: (string | null)[],
  steps: { [step: string]: number[] },
  options: IRecordOptions = {}
): IRunRecord {
  const reused = options.reused ?? [];
  const states: { [cell: string]: Status } = {};
  for (const [step, cells] of Object.entries(steps)) {
    for (const index of cells) {
      const id = ids[index];
      if (id) {
        states[id] = reused.includes(step) ? 'succeeded' : 'queued';
      }
    }
  }
  return {
    job,
    seq: 0,
    ids,
    steps,
    states,
    messages: {},
    pendingClear: [],
    displays: {},
    done: false,
    count: 0,
    counts: {},
    parameters: { ...(options.parameters ?? {}) },
    injected: null,
    reused: [...reused]
  };
}

/**
 * The cells a run of the notebook executes, as its tags say (notebook indices): the cells of
 * its steps (but not of `reused` ones), and the imports, functions and parameters blocks every
 * step runs first. Not: skip cells, papermill's stale injected cell, untagged cells before the
 * first tagged one, markdown.
 */
export function runCells(nb: INotebookSteps, reused: readonly string[] = []): number[] {
  const cells: number[] = [];
  let started = nb.single;
  for (const cell of nb.cells) {
    if (cell.tags === null || cell.role === 'skip' || cell.role === 'injected') {
      continue;
    }
    if (cell.step !== null) {
      started = true;
      if (!reused.includes(cell.step)) {
        cells.push(cell.index);
      }
    } else if (cell.role !== null) {
      started = true; // imports, functions, parameters: run by every step
      cells.push(cell.index);
    } else if (started) {
      cells.push(cell.index); // an untagged cell continuing such a block
    }
  }
  return cells;
}

/** A parameter's value as Python writes it: `'Ada'`, `True`, `None`, `0.5`, `[1, 2]`. */
export function pyValue(value: any): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (typeof value === 'string') {
    return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  }
  if (Array.isArray(value)) {
    return `[${value.map(pyValue).join(', ')}]`;
  }
  if (typeof value === 'object') {
    const items = Object.entries(value).map(([k, v]) => `${pyValue(k)}: ${pyValue(v)}`);
    return `{${items.join(', ')}}`;
  }
  return String(value);
}

/** Parameters in words: `lines = 4, title = 'x'` (empty when there are none). */
export function parametersText(parameters: { [name: string]: any } | null | undefined): string {
  return Object.entries(parameters ?? {})
    .map(([name, value]) => `${name} = ${pyValue(value)}`)
    .join(', ');
}

/** Whether `value` is a record this module wrote (metadata can hold anything). */
export function isRecord(value: any): value is IRunRecord {
  return (
    !!value &&
    typeof value === 'object' &&
    typeof value.job === 'string' &&
    typeof value.seq === 'number' &&
    Array.isArray(value.ids) &&
    typeof value.steps === 'object' &&
    typeof value.states === 'object' &&
    typeof value.messages === 'object' &&
    Array.isArray(value.pendingClear) &&
    typeof value.displays === 'object'
  );
}

// -- plain language -----------------------------------------------------------------------------------

/** Words the server made for a cell's message: as they are, less their code marks. */
function shown(words: string): string {
  return words.replace(/`/g, '').trim();
}

/**
 * A diagnostic `log` event (its `reason` a code) as a cell message: the server's words, made
 * from what Kubernetes said (jupyter_ext/reasons.py); nothing here reads that English.
 */
export function plainDiagnostic(event: IEvent): ICellMessage {
  const reason = reasonOf(null, event.reason);
  const text = shown(String(event.text ?? '')) || 'Kubernetes reports a problem with the step.';
  return reason ? { kind: 'warning', text, reason } : { kind: 'warning', text };
}

/**
 * A step's or job's `error` in plain words: the server's (`message`, made once for its `reason`
 * code). `onCell`: shown on the failing cell itself, where a cell's exception reads shorter.
 */
export function plainError(
  error: { [key: string]: any } | null | undefined,
  step: string | null,
  onCell = false
): string {
  const name = step ? `step '${step}'` : 'the step';
  if (!error) {
    return `${name} failed`;
  }
  const message = shown(String(error.message ?? ''));
  if (error.ename && (reasonOf(error) ?? 'exception') === 'exception') {
    const what = `${error.ename}${error.evalue ? `: ${error.evalue}` : ''}`;
    return onCell
      ? `This cell raised ${what}. ${name[0].toUpperCase()}${name.slice(1)} stopped here.`
      : `${name} failed: ${message || what}`;
  }
  return message || `${name} failed`;
}

/** An error as a cell message, its code kept for styling. */
function errorMessage(
  error: { [key: string]: any } | null | undefined,
  step: string | null,
  onCell: boolean
): ICellMessage {
  const reason = reasonOf(error);
  const text = plainError(error, step, onCell);
  return reason ? { kind: 'error', text, reason } : { kind: 'error', text };
}

// -- the mapping -------------------------------------------------------------------------------------------

/** Applies a job's events, in seq order, to the cells; `record` says what is applied. */
export class CellSync {
  constructor(
    readonly record: IRunRecord,
    private readonly sink: ICellSink
  ) {}

  /** Apply one event. Events at or below the record's seq are duplicates; a skipped seq is a gap
   * (the caller fetches from `record.seq` again), and nothing is applied. */
  apply(event: IEvent): ApplyResult {
    const record = this.record;
    if (event.seq <= record.seq) {
      return 'duplicate';
    }
    if (event.seq !== record.seq + 1) {
      return 'gap';
    }
    this.dispatch(event);
    record.seq = event.seq;
    return 'applied';
  }

  /**
   * A run starts: clear the outputs and execution counts of every cell it will run (`cells`,
   * notebook indices), as Lab's own Run all does cell by cell, so no cell shows an earlier
   * job's outputs under this job's state. Other cells (skipped, untagged, markdown, those of
   * reused steps) keep what they show.
   */
  begin(cells: readonly number[]): void {
    for (const index of cells) {
      const id = this.resolve(null, index);
      if (id !== null) {
        this.clearNow(id);
        this.sink.setExecutionCount(id, null);
        if (!this.record.states[id]) {
          this.record.states[id] = 'queued';
        }
      }
    }
  }

  /** The notebook cell an event is about (by id, then by index as submitted), if it still exists. */
  resolve(cellId: string | null | undefined, cellIndex: number | null | undefined): string | null {
    if (cellId && this.sink.has(cellId)) {
      return cellId;
    }
    if (cellIndex === null || cellIndex === undefined) {
      return null;
    }
    const known = this.record.ids[cellIndex];
    if (known) {
      return this.sink.has(known) ? known : null;
    }
    return this.sink.idAt(cellIndex);
  }

  /** The cells of a step that still exist, in notebook order. */
  stepCells(step: string | null): string[] {
    const cells = step ? (this.record.steps[step] ?? []) : [];
    return cells.map(i => this.resolve(null, i)).filter((id): id is string => id !== null);
  }

  private setState(id: string, state: Status): void {
    this.record.states[id] = state;
  }

  private clearNow(id: string): void {
    const record = this.record;
    this.sink.clear(id);
    record.pendingClear = record.pendingClear.filter(c => c !== id);
    for (const [displayId, places] of Object.entries(record.displays)) {
      const kept = places.filter(([cell]) => cell !== id);
      if (kept.length) {
        record.displays[displayId] = kept;
      } else {
        delete record.displays[displayId];
      }
    }
  }

  /** The message of the first cell of `step`: where a step-level problem is shown. */
  private stepMessage(step: string | null, message: ICellMessage | null): void {
    const first = this.stepCells(step)[0];
    if (first === undefined) {
      return;
    }
    if (message) {
      this.record.messages[first] = message;
    } else if (this.record.messages[first]?.kind === 'warning') {
      delete this.record.messages[first];
    }
  }

  private hasError(step: string | null): boolean {
    return this.stepCells(step).some(id => this.record.messages[id]?.kind === 'error');
  }

  private dispatch(event: IEvent): void {
    const record = this.record;
    const step = event.step ?? null;
    switch (event.type) {
      case 'step.start':
        this.stepMessage(step, null); // the pod runs: scheduling warnings are over
        break;
      case 'step.cached':
        // The cached run's cell events follow (replayed): they fill the cells as it ran.
        if (step && event.from) {
          (record.cached ??= {})[step] = event.from;
        }
        this.stepMessage(step, null);
        break;
      case 'step.retry':
        for (const id of this.stepCells(step)) {
          this.setState(id, 'queued');
          delete record.messages[id];
        }
        this.stepMessage(step, {
          kind: 'warning',
          text: `Attempt ${event.attempt} failed (${plainError(event.error, step)}); retrying as attempt ${event.next_attempt}.`
        });
        break;
      case 'step.end':
        if (step && event.cached_from) {
          (record.cached ??= {})[step] = event.cached_from;
        }
        this.stepEnded(step, String(event.status), event.error);
        break;
      case 'job.end':
        record.done = true;
        if (event.status === 'failed' && event.error && !this.hasError(event.error.step ?? null)) {
          this.placeError(event.error.step ?? null, event.error);
        }
        break;
      case 'log':
        if (event.reason) {
          this.stepMessage(step, plainDiagnostic(event));
        }
        break;
      case 'cell.start': {
        if (event.injected) {
          record.injected = typeof event.source === 'string' ? event.source : null;
          break;
        }
        const id = this.resolve(event.cell_id, event.cell_index);
        if (id === null) {
          break;
        }
        this.clearNow(id);
        this.sink.setExecutionCount(id, null);
        record.count = (record.count ?? 0) + 1;
        (record.counts ??= {})[id] = record.count;
        this.setState(id, 'running');
        delete record.messages[id];
        break;
      }
      case 'cell.output': {
        const id = this.resolve(event.cell_id, event.cell_index);
        if (id === null || event.injected || !event.output) {
          break;
        }
        this.output(id, event);
        break;
      }
      case 'cell.clear': {
        const id = this.resolve(event.cell_id, event.cell_index);
        if (id === null || event.injected) {
          break;
        }
        if (event.wait) {
          if (!record.pendingClear.includes(id)) {
            record.pendingClear.push(id);
          }
        } else {
          this.clearNow(id);
        }
        break;
      }
      case 'cell.end': {
        const id = this.resolve(event.cell_id, event.cell_index);
        if (id === null || event.injected) {
          break;
        }
        // This run's order of execution (the kernel's own count restarts with every step).
        const count = record.counts?.[id];
        if (count !== undefined) {
          this.sink.setExecutionCount(id, count);
          delete record.counts![id];
        } else if (typeof event.execution_count === 'number') {
          this.sink.setExecutionCount(id, event.execution_count);
        }
        if (event.status === 'error') {
          this.setState(id, 'failed');
          record.messages[id] = { kind: 'error', text: plainError(event, step, true) };
        } else {
          this.setState(id, 'succeeded');
        }
        break;
      }
      default:
        break; // job.queued, job.start, artifact: nothing to show in a cell
    }
  }

  private output(id: string, event: IEvent): void {
    const record = this.record;
    const output = event.output!;
    const displayId: string | undefined = event.display_id ?? undefined;
    if (event.update) {
      // update_display_data: replace every output showing that display; unknown ids are ignored.
      for (const [cell, index] of record.displays[displayId ?? ''] ?? []) {
        if (this.sink.has(cell)) {
          this.sink.replace(cell, index, output);
        }
      }
      return;
    }
    if (record.pendingClear.includes(id)) {
      this.clearNow(id);
    }
    const index = this.sink.append(id, output);
    if (displayId) {
      (record.displays[displayId] ??= []).push([id, index]);
    }
  }

  private placeError(step: string | null, error: { [key: string]: any }): void {
    const cell = this.resolve(error.cell_id, error.cell_index);
    if (cell !== null) {
      this.setState(cell, 'failed');
      this.record.messages[cell] = errorMessage(error, step, true);
      return;
    }
    this.stepMessage(step, errorMessage(error, step, false));
  }

  private stepEnded(step: string | null, status: string, error: any): void {
    const cells = this.stepCells(step);
    for (const id of cells) {
      const state = this.record.states[id];
      const open = state === undefined || state === 'queued' || state === 'running';
      if (!open) {
        continue;
      }
      if (status === 'succeeded') {
        this.setState(id, 'succeeded');
      } else if (status === 'failed') {
        this.setState(id, state === 'running' ? 'failed' : 'not_run');
      } else if (status === 'cancelled') {
        this.setState(id, 'cancelled');
      } else {
        this.setState(id, 'not_run');
      }
    }
    if (status === 'succeeded') {
      this.stepMessage(step, null);
    } else if (status === 'failed' && !this.hasError(step)) {
      this.placeError(step, error ?? {});
    } else if (status === 'not_run' && error?.message) {
      // The server's words say why ("not run because step 'x' failed"), as a sentence.
      const message = shown(String(error.message));
      this.stepMessage(step, {
        kind: 'warning',
        text: message.charAt(0).toUpperCase() + message.slice(1)
      });
    }
  }
}
