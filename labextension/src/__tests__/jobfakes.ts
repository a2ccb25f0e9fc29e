/**
 * A stand-in for the API client in widget tests: jobs, events and artifacts kept in memory,
 * with the client's method names. (The client itself is tested against HTTP in client.spec.ts;
 * the real server in tests/server and the browser tests.)
 */

import { JupyterExtClient } from '../client';
import { IArtifact, IEvent, IJob, IJobSpec, IStep } from '../tokens';

export function step(over: Partial<IStep> & { name: string }): IStep {
  return {
    status: 'queued',
    after: [],
    resources: { gpu: 0, memory: null, cpu: null, image: null, extra_limits: {} },
    cells: [],
    attempt: 0,
    retries: 0,
    timeout: null,
    started: null,
    finished: null,
    exit_code: null,
    error: null,
    ...over
  };
}

export function job(over: Partial<IJob> = {}): IJob {
  return {
    id: 'j1',
    name: 'train',
    notebook: 'examples/train.ipynb',
    user: 'ada',
    backend: 'local',
    status: 'running',
    parameters: {},
    created: '2026-11-23T05:00:00Z',
    started: '2026-11-23T05:00:01Z',
    finished: null,
    error: null,
    last_seq: 0,
    steps: [],
    ...over
  };
}

export class FakeApi {
  jobs = new Map<string, IJob>();
  events = new Map<string, IEvent[]>();
  artifactList = new Map<string, IArtifact[]>();
  blobs = new Map<string, Blob>();
  submitted: IJobSpec[] = [];
  cancelled: string[] = [];
  submitError: Error | null = null;
  listeners = new Map<string, ((e: IEvent) => void)[]>();
  fetchedBlobs: string[] = [];
  /** `getJob id` and `artifacts id`, one per request, in order. */
  fetches: string[] = [];

  add(j: IJob, events: Partial<IEvent>[] = []): void {
    this.jobs.set(j.id, j);
    this.events.set(j.id, []);
    for (const e of events) {
      this.emit(j.id, e);
    }
  }

  /** Store an event (seq given in order) and deliver it to open streams. */
  emit(id: string, e: Partial<IEvent>): IEvent {
    const list = this.events.get(id)!;
    const event = {
      v: 1,
      job: id,
      step: null,
      ts: 1_790_000_000,
      ...e,
      seq: list.length + 1
    } as IEvent;
    list.push(event);
    for (const listener of this.listeners.get(id) ?? []) {
      listener(event);
    }
    return event;
  }

  get client(): JupyterExtClient {
    return fakeClient(this);
  }
}

function fakeClient(api: FakeApi): JupyterExtClient {
  return {
    getJob: async (id: string) => {
      api.fetches.push(`getJob ${id}`);
      const j = api.jobs.get(id);
      if (!j) {
        throw new Error(`no job ${id}`);
      }
      return j;
    },
    listJobs: async () => [...api.jobs.values()],
    cancel: async (id: string) => {
      api.cancelled.push(id);
      return api.jobs.get(id)!;
    },
    submit: async (spec: IJobSpec) => {
      if (api.submitError) {
        throw api.submitError;
      }
      api.submitted.push(spec);
      return job({ id: `new${api.submitted.length}` });
    },
    artifacts: async (id: string) => {
      api.fetches.push(`artifacts ${id}`);
      return api.artifactList.get(id) ?? [];
    },
    artifactUrl: (id: string, name: string) => `http://host/api/jobs/${id}/artifacts/${name}`,
    artifactBlob: async (id: string, name: string) => {
      api.fetchedBlobs.push(name);
      const blob = api.blobs.get(name);
      if (!blob) {
        throw new Error(`no artifact ${name}`);
      }
      return blob;
    },
    streamEvents: (id: string, after: number, onEvent: (e: IEvent) => void) => {
      let disposed = false;
      for (const e of api.events.get(id) ?? []) {
        if (e.seq > after) {
          onEvent(e);
        }
      }
      const listener = (e: IEvent) => !disposed && onEvent(e);
      api.listeners.set(id, [...(api.listeners.get(id) ?? []), listener]);
      return {
        lastSeq: 0,
        get isDisposed() {
          return disposed;
        },
        dispose() {
          disposed = true;
          api.listeners.set(
            id,
            (api.listeners.get(id) ?? []).filter(l => l !== listener)
          );
        }
      };
    }
  } as unknown as JupyterExtClient;
}

/** Let promises and short timers run. */
export async function settle(ms = 0): Promise<void> {
  await new Promise(r => setTimeout(r, ms));
}

/** Let promises and timers run until `done()` holds (or `ms` passed): waits on a loaded machine. */
export async function until(done: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!done() && Date.now() < end) {
    await settle(5);
  }
}
