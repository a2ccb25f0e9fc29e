/**
 * A typed client of the jupyter-ext API. It takes its transport (jupyter-server's
 * `ServerConnection.makeRequest` and settings) from the caller, so it stays testable.
 */

import type { ServerConnection } from '@jupyterlab/services';
import type { IArtifact, IEvent, IEventsPage, IInfo, IJob, IJobSpec } from './tokens';

/** An error answered by the server, with its message (which says what to change). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body: { [key: string]: any } = {}
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type MakeRequest = (
  url: string,
  init: RequestInit,
  settings: ServerConnection.ISettings
) => Promise<Response>;

export interface IStream {
  /** The last seq received (resume point). */
  readonly lastSeq: number;
  dispose(): void;
}

export class JupyterExtClient {
  constructor(
    readonly settings: ServerConnection.ISettings,
    private readonly makeRequest: MakeRequest,
    private readonly WebSocketImpl: typeof WebSocket = settings.WebSocket
  ) {}

  /** Absolute URL of an API path, e.g. `jobs/abc/events`. */
  url(path: string, query?: { [key: string]: string | number }): string {
    const base = this.settings.baseUrl.replace(/\/?$/, '/');
    const params = query
      ? '?' +
        Object.entries(query)
          .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
          .join('&')
      : '';
    return `${base}jupyter-ext/api/${path}${params}`;
  }

  private async request<T>(path: string, init: RequestInit = {}, query?: any): Promise<T> {
    const response = await this.makeRequest(this.url(path, query), init, this.settings);
    const text = await response.text();
    let body: any = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = { message: text };
      }
    }
    if (!response.ok) {
      const message = (body && body.message) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, message, body || {});
    }
    return body as T;
  }

  info(): Promise<IInfo> {
    return this.request<IInfo>('info');
  }

  async listJobs(): Promise<IJob[]> {
    return (await this.request<{ jobs: IJob[] }>('jobs')).jobs;
  }

  getJob(id: string): Promise<IJob> {
    return this.request<IJob>(`jobs/${encodeURIComponent(id)}`);
  }

  submit(spec: IJobSpec): Promise<IJob> {
    return this.request<IJob>('jobs', { method: 'POST', body: JSON.stringify(spec) });
  }

  cancel(id: string): Promise<IJob> {
    return this.request<IJob>(`jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
  }

  async remove(id: string): Promise<void> {
    await this.request<void>(`jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
  }

  events(id: string, after = 0, limit?: number): Promise<IEventsPage> {
    const query: { [key: string]: number } = { after };
    if (limit !== undefined) {
      query.limit = limit;
    }
    return this.request<IEventsPage>(`jobs/${encodeURIComponent(id)}/events`, {}, query);
  }

  async artifacts(id: string): Promise<IArtifact[]> {
    return (
      await this.request<{ artifacts: IArtifact[] }>(`jobs/${encodeURIComponent(id)}/artifacts`)
    ).artifacts;
  }

  artifactUrl(id: string, name: string, inline = false): string {
    const path = `jobs/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`;
    return this.url(path, inline ? { inline: 1 } : undefined);
  }

  /**
   * Follow a job's events over the WebSocket: every event after `after`, once, in order.
   * A dropped connection is reopened with `after=<last seq received>`; the stream ends
   * after `job.end` (or when disposed).
   */
  streamEvents(
    id: string,
    after: number,
    onEvent: (event: IEvent) => void,
    options: { retryDelayMs?: number; maxRetries?: number } = {}
  ): IStream {
    const retryDelay = options.retryDelayMs ?? 1000;
    const maxRetries = options.maxRetries ?? 10;
    let lastSeq = after;
    let socket: WebSocket | null = null;
    let disposed = false;
    let ended = false;
    let retries = 0;
    const wsBase = this.settings.wsUrl.replace(/\/?$/, '/');
    const open = () => {
      const url = `${wsBase}jupyter-ext/api/jobs/${encodeURIComponent(id)}/events/stream?after=${lastSeq}`;
      const token = this.settings.token;
      socket = new this.WebSocketImpl(token ? `${url}&token=${encodeURIComponent(token)}` : url);
      socket.onmessage = (message: MessageEvent) => {
        const event = JSON.parse(String(message.data)) as IEvent;
        if (event.seq <= lastSeq) {
          return; // already delivered before a reconnect
        }
        lastSeq = event.seq;
        retries = 0;
        if (event.type === 'job.end') {
          ended = true;
        }
        onEvent(event);
      };
      socket.onclose = () => {
        if (disposed || ended || retries >= maxRetries) {
          return;
        }
        retries += 1;
        setTimeout(() => !disposed && open(), retryDelay);
      };
    };
    open();
    return {
      get lastSeq() {
        return lastSeq;
      },
      dispose() {
        disposed = true;
        socket?.close();
      }
    };
  }
}
