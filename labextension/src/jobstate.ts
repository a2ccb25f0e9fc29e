/**
 * A job as its events tell it, between two fetches of `GET jobs/{id}`: step statuses, cells
 * done per step, what each event adds to a step's log, and errors in plain words.
 *
 * Pure functions and a small tracker, no DOM: the side panel and the job view share them.
 */

import type { LineKind } from './logview';
import { pyValue } from './cellsync';
import { cellLabel } from './labels';
import { IEvent, IJob, IRerunChoice, IRerunSpec, IStep, Reason, reasonOf, Status } from './tokens';

/** Cells finished by the current attempt of each step, from `cell.end` events. */
export class ProgressTracker {
  private done = new Map<string, { attempt: number; cells: Set<number> }>();
  private times = new Map<string, { attempt: number; start: number; end: number | null }>();
  private last = 0;

  /** The seq of the last event taken in. */
  get lastSeq(): number {
    return this.last;
  }

  /** Take one event in (events at or below the last seq are ignored, so replays are harmless). */
  add(event: IEvent): void {
    if (event.seq <= this.last) {
      return;
    }
    this.last = event.seq;
    const step = event.step;
    if (!step) {
      return;
    }
    const attempt = Number(event.attempt ?? 0);
    const entry = this.done.get(step);
    if (event.type === 'step.start') {
      this.times.set(step, { attempt, start: event.ts, end: null });
    } else if (event.type === 'step.end') {
      const times = this.times.get(step);
      if (times && (event.attempt === undefined || Number(event.attempt) >= times.attempt)) {
        times.end = event.ts;
      }
    }
    if (event.type === 'step.start' || event.type === 'step.retry') {
      const next =
        event.type === 'step.retry' ? Number(event.next_attempt ?? attempt + 1) : attempt;
      this.done.set(step, { attempt: next, cells: new Set() });
    } else if (event.type === 'cell.end' && typeof event.cell_index === 'number') {
      if (!entry || entry.attempt < attempt) {
        this.done.set(step, { attempt, cells: new Set([event.cell_index]) });
      } else if (entry.attempt === attempt) {
        entry.cells.add(event.cell_index);
      }
    }
  }

  /**
   * When the current attempt of `step` started and ended, in seconds since the epoch, from
   * its `step.start` and `step.end` events (the runner's clock): the one source of a step's
   * duration in the step header, its log and the panel. Null before its `step.start`.
   */
  stepTimes(step: string): { start: number; end: number | null } | null {
    const times = this.times.get(step);
    return times ? { start: times.start, end: times.end } : null;
  }

  /**
   * Cells of `step` done so far (its current attempt); only those of `cells` when given, so
   * the cells every step runs first (imports, parameters) do not count as its progress.
   */
  cellsDone(step: string, cells?: readonly number[]): number {
    const done = this.done.get(step)?.cells;
    if (!done) {
      return 0;
    }
    return cells ? cells.filter(c => done.has(c)).length : done.size;
  }
}

/** The short id people read in titles: the first 6 characters of a job's id. */
export function shortId(id: string): string {
  return id.slice(0, 6);
}

/**
 * A job as its title names it, so jobs of one notebook are told apart: its name, the
 * parameters it was given (those that differ from the notebook's defaults) and a short id:
 * `hello · name='Ada' · 3f2a1c`.
 */
export function jobLabel(job: Pick<IJob, 'id' | 'name' | 'parameters'>, max = 48): string {
  return `${job.name} · ${jobDetails(job, max)}`;
}

/** What tells a job apart from others of its notebook: `name='Ada' · 3f2a1c`. */
export function jobDetails(job: Pick<IJob, 'id' | 'parameters'>, max = 48): string {
  let params = Object.entries(job.parameters ?? {})
    .map(([name, value]) => `${name}=${pyValue(value)}`)
    .join(', ');
  if (params.length > max) {
    params = `${params.slice(0, max - 1)}…`;
  }
  return [params, shortId(job.id)].filter(Boolean).join(' · ');
}

/**
 * What a re-run of `job` submits: its notebook under its name, with the parameters and backend
 * the user confirmed; from a step on, the steps before it reuse this job's results.
 */
export function rerunSpec(
  job: Pick<IJob, 'id' | 'name' | 'notebook'>,
  choice: IRerunChoice,
  fromStep: string | null
): IRerunSpec {
  const spec: IRerunSpec = {
    notebook: job.notebook,
    parameters: choice.parameters,
    backend: choice.backend,
    name: job.name
  };
  if (fromStep) {
    spec.from_step = fromStep;
    spec.rerun_of = job.id;
  }
  if (choice.fresh) {
    spec.fresh = true;
  }
  if (choice.sweep && Object.keys(choice.sweep).length) {
    spec.sweep = choice.sweep;
    spec.sweep_mode = choice.sweep_mode ?? 'grid';
    spec.sweep_parallel = choice.sweep_parallel ?? null;
  }
  return spec;
}

/** Seconds in words: `42s`, `2m05s`, `1h02m`. */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  }
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/**
 * How long a step ran (so far, while it runs). From its `step.start` and `step.end` events
 * when `tracker` saw them, so the step header, the log line and the panel say the same;
 * otherwise from the step's row (a step reused from an earlier job, a list never followed).
 */
export function stepDuration(
  step: Pick<IStep, 'name' | 'started' | 'finished' | 'status'>,
  tracker?: ProgressTracker | null,
  now: number = Date.now()
): string {
  const times = tracker?.stepTimes(step.name);
  if (times) {
    let end = times.end;
    if (end === null) {
      // Ended without a step.end from this attempt (the server ended it): the row says when.
      const finished = step.finished ? Date.parse(step.finished) / 1000 : null;
      end = step.status === 'running' || finished === null ? now / 1000 : finished;
    }
    return formatSeconds(end - times.start);
  }
  if (!step.started) {
    return '';
  }
  const end = step.finished ? Date.parse(step.finished) : now;
  return formatSeconds((end - Date.parse(step.started)) / 1000);
}

/**
 * How far a step has come, from 0 to 1: all the way once it succeeded, by cells done while it
 * runs (a step whose cells are not known counts as half way).
 */
export function stepFraction(step: Pick<IStep, 'status' | 'cells'>, cellsDone: number): number {
  switch (step.status) {
    case 'succeeded':
      return 1;
    case 'queued':
      return 0;
    default: {
      const total = step.cells.length;
      if (total === 0) {
        return step.status === 'running' ? 0.5 : 0;
      }
      return Math.min(1, cellsDone / total);
    }
  }
}

/**
 * The job after one event: statuses, attempts and errors move as the server will say on the
 * next fetch, so the picture changes without waiting for it.
 */
export function applyEvent(job: IJob, event: IEvent): IJob {
  const when = new Date(event.ts * 1000).toISOString();
  const steps = (fn: (s: IStep) => IStep): IStep[] =>
    job.steps.map(s => (s.name === event.step ? fn(s) : s));
  switch (event.type) {
    case 'job.start':
      return { ...job, status: 'running', started: job.started ?? when };
    case 'job.end':
      return {
        ...job,
        status: (event.status as Status) ?? job.status,
        error: event.error ?? null,
        finished: job.finished ?? when,
        last_seq: Math.max(job.last_seq, event.seq)
      };
    case 'step.start':
      return {
        ...job,
        status: job.status === 'queued' ? 'running' : job.status,
        steps: steps(s => ({
          ...s,
          status: 'running',
          attempt: Number(event.attempt ?? s.attempt),
          started: s.started ?? when,
          finished: null,
          error: null
        }))
      };
    case 'step.retry':
      return {
        ...job,
        steps: steps(s => ({
          ...s,
          status: 'queued',
          attempt: Number(event.next_attempt ?? s.attempt + 1),
          error: event.error ?? null
        }))
      };
    case 'step.cached':
      // Satisfied from the cache: its replayed events follow, then a succeeded step.end.
      return {
        ...job,
        status: job.status === 'queued' ? 'running' : job.status,
        steps: steps(s => ({
          ...s,
          status: 'running',
          started: s.started ?? when,
          cache: {
            key: String(event.key ?? s.cache?.key ?? ''),
            hit: true,
            from: event.from ?? null
          }
        }))
      };
    case 'step.end':
      return {
        ...job,
        steps: steps(s => ({
          ...s,
          status: (event.status as Status) ?? s.status,
          exit_code: event.exit_code ?? s.exit_code,
          error: event.error ?? null,
          finished: when
        }))
      };
    default:
      return job;
  }
}

/** Events after which the job's statuses (and so the picture) change. */
export const STATUS_EVENTS: ReadonlySet<string> = new Set([
  'job.queued',
  'job.start',
  'job.end',
  'step.start',
  'step.retry',
  'step.end',
  'step.cached',
  'sweep.child'
]);

/**
 * What an event adds to its step's log, if anything. `started`: the ts of the step's
 * `step.start` (its attempt), so the log's "step succeeded in 12s" is the header's 12s.
 */
export function logLines(
  event: IEvent,
  started?: number | null
): { text: string; kind: LineKind }[] {
  switch (event.type) {
    case 'step.start': {
      const where = event.host ? ` on ${event.host}` : '';
      return [info(`── attempt ${event.attempt ?? 1} started${where} ──`)];
    }
    case 'step.cached': {
      const from = event.from ?? {};
      return [
        info(
          `── cached: the result of job ${from.job} (step ${from.step}, attempt ${from.attempt ?? 1}); ` +
            'its inputs did not change, so it is not run again ──'
        )
      ];
    }
    case 'cell.start':
      return event.injected || typeof event.cell_index !== 'number'
        ? []
        : [info(`── ${cellLabel(event.cell_index)} ──`)];
    case 'cell.output':
      return outputLines(event.output ?? {});
    case 'log':
      return event.text ? [{ text: String(event.text), kind: kindOf(event.stream) }] : [];
    case 'step.retry':
      return [
        info(
          `── attempt ${event.attempt} failed (${plainMessage(event.error)}); ` +
            `retrying as attempt ${event.next_attempt} ──`
        )
      ];
    case 'step.end': {
      const took = typeof started === 'number' ? ` in ${formatSeconds(event.ts - started)}` : '';
      const status = String(event.status ?? 'ended').replace('_', ' ');
      const why = event.error ? `: ${plainMessage(event.error)}` : '';
      const lines = [info(`── step ${status}${took}${why} ──`)];
      // A cell's traceback is already in the log (its error output); the runner's own is not.
      const traceback = event.error?.traceback;
      if (
        Array.isArray(traceback) &&
        traceback.length &&
        typeof event.error.cell_index !== 'number'
      ) {
        lines.unshift({ text: `${traceback.join('').replace(/\n?$/, '\n')}`, kind: 'stderr' });
      }
      return lines;
    }
    default:
      return [];
  }
}

function info(text: string): { text: string; kind: LineKind } {
  return { text: `${text}\n`, kind: 'info' };
}

function kindOf(stream: unknown): LineKind {
  return stream === 'stderr' ? 'stderr' : 'stdout';
}

function outputLines(output: { [key: string]: any }): { text: string; kind: LineKind }[] {
  const join = (value: unknown) => (Array.isArray(value) ? value.join('') : String(value ?? ''));
  switch (output.output_type) {
    case 'stream':
      return [{ text: join(output.text), kind: kindOf(output.name) }];
    case 'error': {
      const traceback = Array.isArray(output.traceback) ? output.traceback.join('\n') : '';
      return [{ text: `${traceback || `${output.ename}: ${output.evalue}`}\n`, kind: 'stderr' }];
    }
    case 'execute_result':
    case 'display_data': {
      const data = output.data ?? {};
      const image = Object.keys(data).find(k => k.startsWith('image/'));
      if (image) {
        return [info(`[${image} output: see the cell or the artifacts]`)];
      }
      const text = data['text/plain'];
      return text === undefined ? [] : [{ text: `${join(text)}\n`, kind: 'stdout' }];
    }
    default:
      return [];
  }
}

/** The server's one-line message of an error object. */
export function plainMessage(error: { [key: string]: any } | null | undefined): string {
  if (!error) {
    return '';
  }
  if (error.message) {
    return String(error.message);
  }
  if (error.ename) {
    return `${error.ename}: ${error.evalue ?? ''}`;
  }
  return JSON.stringify(error);
}

/**
 * What each reason code means and what to do about it, shown after the server's own words.
 * Keyed on the code of docs/events.md, never on the words: the server words each failure once.
 */
export const REASON_HINTS: { readonly [key in Reason]: string | null } = {
  oom:
    'The step needed more memory than it was given, so it was stopped. Give it more with a ' +
    '`memory:` tag on its cell (e.g. memory:16Gi), or make it hold less data at once.',
  unschedulable:
    'No machine in the cluster can take the step with the GPUs, memory and CPU it asks for ' +
    'right now. It waits until one frees up; ask for less, or ask your administrator which ' +
    'machines exist.',
  image_pull:
    "The step's container image could not be downloaded. Check its `image:` tag for typos, " +
    'and that the cluster is allowed to pull it.',
  timeout:
    'The step ran longer than its time limit. Raise it with a `timeout:` tag (e.g. timeout:2h).',
  evicted:
    'The machine running the step took its resources back (usually low memory or disk). ' +
    'Re-run it; if it keeps happening, ask for more memory.',
  lost: "The step's process went away without saying how it ended; its log may say why. Re-run it.",
  kernel_died: null,
  cancelled: null,
  exception: null
};

/** The hint of an `exception` in a cell. */
const IN_CELL = 'This error came from the code in that cell; its traceback is in the step log.';

/**
 * An error in words a notebook user can act on: the server's message, plus what its reason
 * code means (out of memory, unschedulable, image pull, ...). `reason`: the code beside the
 * error (a diagnostic `log` event's), else the error's own.
 */
export function explainError(
  error: { [key: string]: any } | null | undefined,
  reason?: string
): string {
  const message = plainMessage(error);
  const code = reasonOf(error, reason);
  if (!message && !code) {
    return '';
  }
  let hint = code ? REASON_HINTS[code] : null;
  const inCell = typeof error?.cell_index === 'number' && error?.ename;
  if (!hint && (code === 'exception' || code === null) && inCell) {
    hint = IN_CELL;
  }
  return [message, hint]
    .filter(Boolean)
    .map(t => sentence(String(t)))
    .join(' ');
}

/** Text as a sentence: a capital first letter and a full stop (unless it ends in one). */
export function sentence(text: string): string {
  const t = text.trim();
  if (!t) {
    return '';
  }
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}
