/**
 * The shapes of the jupyter-ext REST/WebSocket API (jupyter_ext/openapi.yaml is the source).
 */

import { Token } from '@lumino/coreutils';
import type { IDisposable } from '@lumino/disposable';
import type { JupyterExtClient } from './client';

/**
 * The one client of the jupyter-ext API in the page: provided by the `jupyter-ext:client`
 * plugin (index.ts), required by every plugin that talks to the server.
 */
export const IJupyterExtClient = new Token<JupyterExtClient>(
  'jupyter-ext:IJupyterExtClient',
  'The client of the jupyter-ext REST/WebSocket API (jobs, events, plans, tag checks).'
);

export type Status = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'not_run';

export const TERMINAL: ReadonlySet<Status> = new Set([
  'succeeded',
  'failed',
  'cancelled',
  'not_run'
]);

/** A status in words, as the job view's graph and the cell bars show it. */
export const STATUS_WORDS: { readonly [key in Status]: string } = {
  queued: 'queued',
  running: 'running',
  succeeded: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
  not_run: 'not run'
};

export interface IResources {
  gpu: number;
  memory: string | null;
  cpu: string | null;
  image: string | null;
  extra_limits: { [key: string]: string };
}

export interface IStep {
  name: string;
  status: Status;
  after: string[];
  resources: IResources;
  cells: number[];
  attempt: number;
  retries: number;
  timeout: number | null;
  started: string | null;
  finished: string | null;
  exit_code: number | null;
  error: IStepError | null;
  /** Set on a step a re-run did not run again: the earlier job (and attempt) it reuses. */
  reused_from?: { job: string; attempt: number } | null;
  /** While the step waits for a slot on its backend: 1 for the next to start, else null. */
  queue_position?: number | null;
  /** A cached step (tag `cache`): its key, and on a hit the earlier run it reuses. */
  cache?: IStepCache | null;
}

/** Where a step's result came from when the cache had it: that job's step and attempt. */
export interface ICachedFrom {
  job: string;
  step: string;
  attempt: number;
}

/** A cached step's cache entry: its key, whether it was a hit, and the run it reuses. */
export interface IStepCache {
  key: string;
  hit: boolean;
  from: ICachedFrom | null;
}

/** One child run of a sweep, as the sweep job's view lists it. */
export interface ISweepChild {
  id: string;
  name: string;
  /** The swept parameters' values of this run. */
  parameters: { [name: string]: any };
  status: Status;
  /** Seconds it ran (so far), or null before it started. */
  duration: number | null;
  /** The last value of each metric it logged. */
  metrics: { [name: string]: number };
}

/** A sweep job's own part: what is swept and how its children stand. */
export interface ISweep {
  mode: 'grid' | 'zip';
  parallel: number | null;
  /** The swept parameters' names, in the order given. */
  parameters: string[];
  /** Every metric name a child logged. */
  metrics: string[];
  counts: { [key in 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled']?: number };
  children: ISweepChild[];
}

export interface IJob {
  id: string;
  name: string;
  notebook: string;
  user: string;
  backend: string;
  status: Status;
  /** While the job waits for a slot: the best place in line of its steps, else null. */
  queue_position?: number | null;
  parameters: { [key: string]: any };
  created: string;
  started: string | null;
  finished: string | null;
  error: IStepError | null;
  last_seq: number;
  steps: IStep[];
  /** A sweep's child: the sweep job's id (null for a job of its own). */
  parent?: string | null;
  /** Set on a sweep job (which has no steps of its own). */
  sweep?: ISweep | null;
  /** The last value of each metric the job logged (`jupyter_ext.log_metric`). */
  metrics?: { [name: string]: number };
}

export interface IJobSpec {
  notebook: string;
  parameters?: { [key: string]: any };
  backend?: string | null;
  name?: string;
  idempotency_key?: string;
  resources?: Partial<IResources>;
  /** Run every step again, ignoring cached results (new results still enter the cache). */
  fresh?: boolean;
  /** A parameter sweep: each name's values; one child job per combination. */
  sweep?: { [name: string]: any[] } | null;
  /** `grid`: every combination; `zip`: the i-th values together (equal lengths). */
  sweep_mode?: 'grid' | 'zip';
  /** Children running at once (the server's default when null). */
  sweep_parallel?: number | null;
}

/** One event of the contract: `{v, job, step, seq, ts, type, ...}`. */
export interface IEvent {
  v: number;
  job: string;
  step: string | null;
  seq: number;
  ts: number;
  type: string;
  cell_index?: number | null;
  cell_id?: string | null;
  output?: { [key: string]: any };
  /** On a failing `step.end` and a diagnostic `log` event: why, as a code (docs/events.md);
   * `error` (on `step.end`, `step.retry`, `job.end`) is an `IStepError`. */
  reason?: Reason;
  [key: string]: any;
}

/**
 * Why a step failed, or what a diagnostic is about: the codes of jupyter_ext/contract.py
 * REASONS. The server words each (`message`, a log's `text`); the Lab keys its presentation
 * on the code, never on the words.
 */
export const REASONS = [
  'oom',
  'unschedulable',
  'image_pull',
  'timeout',
  'evicted',
  'cancelled',
  'exception',
  'lost',
  'kernel_died'
] as const;

export type Reason = (typeof REASONS)[number];

/** A step's or job's `error`: its code, the server's plain words, and the facts beside them. */
export interface IStepError {
  reason?: Reason;
  message?: string;
  /** On a job's error: the step that failed. */
  step?: string;
  cell_index?: number | null;
  cell_id?: string | null;
  ename?: string;
  evalue?: string;
  traceback?: string[];
  [key: string]: any;
}

/** The reason code of an error (or the one given beside it), when it is one of ours. */
export function reasonOf(
  error: { [key: string]: any } | null | undefined,
  reason?: string | null
): Reason | null {
  const code = reason ?? error?.reason;
  return (REASONS as readonly string[]).includes(code) ? (code as Reason) : null;
}

export interface IEventsPage {
  events: IEvent[];
  last_seq: number;
  done: boolean;
}

export interface IArtifact {
  name: string;
  step: string;
  size: number;
  mime: string;
}

export interface IInfo {
  version: string;
  backends: string[];
  default_backend: string;
  user: string;
}

/** The JSON body of a 4xx/5xx answer; `message` says what the user has to change. */
export interface IApiErrorBody {
  message?: string;
  reason?: string;
  field?: string;
  step?: string;
  cell?: number;
  [key: string]: any;
}

/** A followed event stream; disposing it closes the socket and stops reconnecting. */
export interface IEventStream extends IDisposable {
  /** The seq of the last event delivered: where a reconnect resumes. */
  readonly lastSeq: number;
}

/** A re-run: the same notebook, optionally from one step on, reusing `rerun_of`'s earlier steps. */
export interface IRerunSpec extends IJobSpec {
  /** Re-run this step and everything after it. */
  from_step?: string;
  /** The job whose results the steps before `from_step` reuse. */
  rerun_of?: string;
}

/** What a re-run runs with, as the user confirmed it. */
export interface IRerunChoice {
  parameters: { [name: string]: any };
  backend: string;
  /** Run every step again, ignoring cached results. */
  fresh?: boolean;
  /** Run it as a sweep (a sweep job's re-run: its values, as the user confirmed them). */
  sweep?: { [name: string]: any[] } | null;
  sweep_mode?: 'grid' | 'zip';
  sweep_parallel?: number | null;
}

/** One step of `POST plan`: what would run, where in the notebook, with what. */
export interface IPlannedStep {
  name: string;
  after: string[];
  cells: { index: number; id: string | null }[];
  resources: IResources;
  timeout: number | null;
  retries: number;
  /** Whether its result is taken from the cache when its inputs did not change. */
  cache?: boolean;
}

/** One parameter of the notebook's parameters cell (`value` holds the default when `literal`). */
export interface IParameter {
  name: string;
  value: any;
  literal: boolean;
  default: string;
  type: string;
  help: string;
  cell: number;
}

/** `POST plan`: the steps and parameters of a notebook, or why it would be refused (`error`). */
export interface IPlan {
  notebook: string;
  backend: string;
  steps: IPlannedStep[];
  parameters: IParameter[];
  warnings: { cell?: number | null; step?: string | null; message: string }[];
  single: boolean;
  error: IApiErrorBody | null;
}

/** One run of a schedule: when it was due, when it fired, the job it made (or why none). */
export interface IScheduleRun {
  /** When the run was due (ISO 8601 UTC). */
  due: string;
  /** When it fired (ISO 8601 UTC), or null while not fired (or skipped). */
  fired: string | null;
  /** The job it made, or null when none was made. */
  job: string | null;
  /** That job's status now (null when there is no job, e.g. it was deleted). */
  status: Status | null;
  /** Why no job was made, in words (e.g. the snapshot could not be read). */
  error: string | null;
}

/** A schedule (`GET schedules`): a notebook snapshot run at the times of its cron expression. */
export interface ISchedule {
  id: string;
  name: string;
  notebook: string;
  /** Five-field cron expression (minute hour day-of-month month day-of-week). */
  cron: string;
  /** IANA time zone the cron expression is read in, e.g. `Europe/Berlin`. */
  timezone: string;
  paused: boolean;
  parameters: { [name: string]: any };
  sweep: { [name: string]: any[] } | null;
  sweep_mode: 'grid' | 'zip' | null;
  backend: string | null;
  kernel?: string | null;
  /** Whether its runs ignore cached results (every step runs each time). */
  fresh: boolean;
  /** When it was made (ISO 8601 UTC). */
  created: string;
  /** When the notebook snapshot the runs use was taken (ISO 8601 UTC). */
  snapshot_taken: string | null;
  /** The next run (epoch seconds), or null while paused. */
  next_run: number | null;
  /** The next run in ISO 8601, in the schedule's own zone. */
  next_run_iso: string | null;
  /** The last runs, newest first (at most 10). */
  runs: IScheduleRun[];
}

/** `POST schedules`: what to run, when, and with what. */
export interface IScheduleSpec {
  notebook: string;
  cron: string;
  timezone?: string;
  name?: string;
  parameters?: { [name: string]: any };
  sweep?: { [name: string]: any[] } | null;
  sweep_mode?: 'grid' | 'zip';
  /** Children running at once (the server's default when null). */
  sweep_parallel?: number | null;
  backend?: string | null;
  kernel?: string | null;
  /** Each run ignores cached results: every step runs again (new data each night). */
  fresh?: boolean;
}

/** `PATCH schedules/{id}`: what to change; `snapshot: true` takes a new notebook snapshot now. */
export interface ISchedulePatch {
  paused?: boolean;
  cron?: string;
  timezone?: string;
  parameters?: { [name: string]: any };
  /** Whether its runs ignore cached results. */
  fresh?: boolean;
  snapshot?: true;
}
