/**
 * A typed client of the jupyter-ext API. It takes its transport (jupyter-server's
 * `ServerConnection.makeRequest` and settings) from the caller, so it stays testable.
 */

import { URLExt } from '@jupyterlab/coreutils';
import type { ServerConnection } from '@jupyterlab/services';
import type {
  IApiErrorBody,
  IArtifact,
  IEvent,
  IEventsPage,
  IEventStream,
  IInfo,
  IJob,
  IJobSpec,
  IPlan,
  ISchedule,
  ISchedulePatch,
  IScheduleSpec
} from './tokens';
import type { INotebookSteps, ITagCheckRequest } from './tagcheck';

/** The API's path under the server's base URL. */
export const API_PATH = 'jupyter-ext/api';

/** An error answered by the server, with its message (which says what to change). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: IApiErrorBody = {}
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The machine-readable reason (e.g. `invalid`, `not_found`), when the server gave one. */
  get reason(): string | undefined {
    return this.body.reason;
  }

  /** The request field the user has to change, when the server named one. */
  get field(): string | undefined {
    return this.body.field;
  }
}

/** An answer's body: its JSON, `{message: text}` when it is not JSON, undefined when empty. */
function parseBody(text: string): any {
  if (!text) {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    return { message: text };
  }
}

/** The error a 4xx/5xx answer stands for, with the server's message when it gave one. */
function apiError(response: Response, body: IApiErrorBody | undefined): ApiError {
  const message = body?.message || `${response.status} ${response.statusText}`;
  return new ApiError(response.status, message, body ?? {});
}

export type MakeRequest = (
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
) => Promise<Response>;

export class JupyterExtClient {
  constructor(
    readonly settings: ServerConnection.ISettings,
    private readonly makeRequest: MakeRequest,
    private readonly WebSocketImpl: typeof WebSocket = settings.WebSocket
  ) {}

  /** Absolute URL of an API path, e.g. `jobs/abc/events`. */
  url(path: string, query?: { [key: string]: string | number }): string {
    return withQuery(URLExt.join(this.settings.baseUrl, API_PATH, path), query);
  }

  private async request<T>(path: string, init: RequestInit = {}, query?: any): Promise<T> {
    const response = await this.makeRequest(this.url(path, query), init, this.settings);
    const body = parseBody(await response.text());
    if (!response.ok) {
      throw apiError(response, body);
    }
    return body as T;
  }

  /** Server version, the backends it offers and the user it sees. */
  info(): Promise<IInfo> {
    return this.request<IInfo>('info');
  }

  /** The user's jobs, newest first. */
  async listJobs(): Promise<IJob[]> {
    return (await this.request<{ jobs: IJob[] }>('jobs')).jobs;
  }

  /** One job with its steps. */
  getJob(id: string): Promise<IJob> {
    return this.request<IJob>(`jobs/${encodeURIComponent(id)}`);
  }

  /** Submit a notebook as a job; answers the queued job. */
  submit(spec: IJobSpec): Promise<IJob> {
    return this.request<IJob>('jobs', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(spec)
    });
  }

  /** Ask the server to stop a job; answers the job as it is now. */
  cancel(id: string): Promise<IJob> {
    return this.request<IJob>(`jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  /** Forget a finished job and its events and artifacts. */
  async remove(id: string): Promise<void> {
    await this.request<void>(`jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  /** One page of a job's events with seq > `after`. */
  events(id: string, after = 0, limit?: number): Promise<IEventsPage> {
    const query: { [key: string]: number } = { after };
    if (limit !== undefined) {
      query.limit = limit;
    }
    return this.request<IEventsPage>(`jobs/${encodeURIComponent(id)}/events`, {}, query);
  }

  /** The files a job's steps saved. */
  async artifacts(id: string): Promise<IArtifact[]> {
    return (
      await this.request<{ artifacts: IArtifact[] }>(`jobs/${encodeURIComponent(id)}/artifacts`)
    ).artifacts;
  }

  /** Where to download an artifact (`inline` shows images in the page). */
  artifactUrl(id: string, name: string, inline = false): string {
    const path = `jobs/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`;
    return this.url(path, inline ? { inline: 1 } : undefined);
  }

  /**
   * Follow a job's events over the WebSocket: every event after `after`, once, in order.
   * A dropped connection is reopened with `after=<last seq received>` (backing off, at most
   * `maxRetries` times in a row); the stream ends after `job.end`, when the server closes
   * normally (code 1000), or when disposed.
   */
  streamEvents(
    id: string,
    after: number,
    onEvent: (event: IEvent) => void,
    options: { retryDelayMs?: number; maxRetries?: number } = {}
  ): IEventStream {
    const retryDelay = options.retryDelayMs ?? 1000;
    const maxRetries = options.maxRetries ?? 10;
    const { token, appendToken } = this.settings;
    const path = URLExt.join(this.settings.wsUrl, API_PATH, 'jobs', encodeURIComponent(id));
    let lastSeq = after;
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | null = null;
    let disposed = false;
    let ended = false;
    let retries = 0;
    const open = () => {
      timer = null;
      const query: { [key: string]: string | number } = { after: lastSeq };
      if (token && appendToken) {
        query.token = token;
      }
      socket = new this.WebSocketImpl(withQuery(`${path}/events/stream`, query));
      socket.onmessage = (message: MessageEvent) => {
        let event: IEvent;
        try {
          event = JSON.parse(String(message.data)) as IEvent;
        } catch {
          console.warn('jupyter-ext: ignoring a message that is not JSON', message.data);
          return;
        }
        if (disposed || typeof event.seq !== 'number' || event.seq <= lastSeq) {
          return; // already delivered before a reconnect
        }
        lastSeq = event.seq;
        retries = 0;
        if (event.type === 'job.end') {
          ended = true;
        }
        onEvent(event);
      };
      socket.onclose = (close: CloseEvent) => {
        if (close?.code === 1000) {
          ended = true;
        }
        if (disposed || ended || retries >= maxRetries) {
          return;
        }
        const delay = Math.min(retryDelay * 2 ** retries, 30000);
        retries += 1;
        timer = setTimeout(open, delay);
      };
    };
    open();
    return {
      get lastSeq() {
        return lastSeq;
      },
      get isDisposed() {
        return disposed;
      },
      dispose() {
        if (disposed) {
          return;
        }
        disposed = true;
        if (timer !== null) {
          clearTimeout(timer);
        }
        socket?.close();
      }
    };
  }

  /**
   * The bytes of one artifact, fetched with the server's auth (token header, XSRF cookie), so
   * a page can show or save it through an object URL.
   */
  async artifactBlob(id: string, name: string): Promise<Blob> {
    const response = await this.makeRequest(this.artifactUrl(id, name), {}, this.settings);
    if (!response.ok) {
      throw apiError(response, parseBody(await response.text()));
    }
    return response.blob();
  }

  /** How a notebook would run on `backend` (steps, cells, parameters, problems); stores nothing. */
  plan(notebook: string, backend?: string | null): Promise<IPlan> {
    return this.request<IPlan>('plan', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(backend ? { notebook, backend } : { notebook })
    });
  }

  /** What the cells' tags say as the Lab holds them now (unsaved edits included); stores nothing. */
  checkTags(request: ITagCheckRequest): Promise<INotebookSteps> {
    return this.request<INotebookSteps>('tags/check', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(request)
    });
  }

  // -- schedules --

  /** The user's schedules. */
  async schedules(): Promise<ISchedule[]> {
    return (await this.request<{ schedules: ISchedule[] }>('schedules')).schedules;
  }

  /** One schedule with its last runs. */
  getSchedule(id: string): Promise<ISchedule> {
    return this.request<ISchedule>(`schedules/${encodeURIComponent(id)}`);
  }

  /** Make a schedule (the server snapshots the notebook now); answers it. */
  createSchedule(spec: IScheduleSpec): Promise<ISchedule> {
    return this.request<ISchedule>('schedules', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(spec)
    });
  }

  /** Pause, resume, re-time or re-snapshot a schedule; answers it as it is now. */
  updateSchedule(id: string, patch: ISchedulePatch): Promise<ISchedule> {
    return this.request<ISchedule>(`schedules/${encodeURIComponent(id)}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(patch)
    });
  }

  /** Delete a schedule (the jobs it made stay). */
  async deleteSchedule(id: string): Promise<void> {
    await this.request<void>(`schedules/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }
}

/** `url?k=v&...` with every key and value escaped. */
function withQuery(url: string, query?: { [key: string]: string | number }): string {
  if (!query || Object.keys(query).length === 0) {
    return url;
  }
  const params = Object.entries(query)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
    .join('&');
  return `${url}?${params}`;
}
