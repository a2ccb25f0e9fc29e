import { ServerConnection } from '@jupyterlab/services';
import { ApiError, JupyterExtClient, MakeRequest } from '../client';
import { IEvent } from '../tokens';
import { reply, settings } from './transport';

function recorder(status: number, body: any) {
  const calls: { url: string; init: RequestInit }[] = [];
  const makeRequest: MakeRequest = async (url, init) => {
    calls.push({ url, init });
    return reply(status, body);
  };
  return { calls, makeRequest };
}

describe('JupyterExtClient requests', () => {
  it('lists jobs from the jobs route', async () => {
    const { calls, makeRequest } = recorder(200, { jobs: [{ id: 'a' }] });
    const jobs = await new JupyterExtClient(settings, makeRequest).listJobs();
    expect(jobs).toEqual([{ id: 'a' }]);
    expect(calls[0].url).toBe('http://host/base/jupyter-ext/api/jobs');
  });

  it('submits a spec as a JSON POST', async () => {
    const { calls, makeRequest } = recorder(201, { id: 'j1', status: 'queued' });
    const job = await new JupyterExtClient(settings, makeRequest).submit({
      notebook: 'a/b.ipynb',
      parameters: { n: 2 }
    });
    expect(job.id).toBe('j1');
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(String(calls[0].init.body))).toEqual({
      notebook: 'a/b.ipynb',
      parameters: { n: 2 }
    });
  });

  it('asks the tag check with the cells as a JSON POST', async () => {
    const { calls, makeRequest } = recorder(200, { single: true, cells: [], steps: [] });
    const request = {
      cells: [{ cell_type: 'code', metadata: { tags: ['step:a'] } }],
      edit: { cell: 0, remove: true as const }
    };
    const answer = await new JupyterExtClient(settings, makeRequest).checkTags(request);
    expect(answer.single).toBe(true);
    expect(calls[0].url).toBe('http://host/base/jupyter-ext/api/tags/check');
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(String(calls[0].init.body))).toEqual(request);
  });

  it('builds event, cancel and artifact URLs with escaping', async () => {
    const { calls, makeRequest } = recorder(200, { events: [], last_seq: 0, done: true });
    const client = new JupyterExtClient(settings, makeRequest);
    await client.events('j 1', 5, 10);
    expect(calls[0].url).toBe(
      'http://host/base/jupyter-ext/api/jobs/j%201/events?after=5&limit=10'
    );
    await client.cancel('j1');
    expect(calls[1].url).toBe('http://host/base/jupyter-ext/api/jobs/j1/cancel');
    expect(calls[1].init.method).toBe('POST');
    expect(client.artifactUrl('j1', 'a b.png', true)).toBe(
      'http://host/base/jupyter-ext/api/jobs/j1/artifacts/a%20b.png?inline=1'
    );
  });

  it('turns an error answer into an ApiError carrying the server message', async () => {
    const { makeRequest } = recorder(400, {
      message: 'resources.gpu: -1 is negative',
      field: 'resources.gpu'
    });
    const client = new JupyterExtClient(settings, makeRequest);
    await expect(client.submit({ notebook: 'x.ipynb' })).rejects.toMatchObject({
      status: 400,
      message: 'resources.gpu: -1 is negative',
      body: { field: 'resources.gpu' }
    });
    await expect(client.getJob('x')).rejects.toBeInstanceOf(ApiError);
  });

  it('says the status when the error answer is not JSON', async () => {
    const { makeRequest } = recorder(502, undefined);
    const plain: MakeRequest = async (url, init, s) => ({
      ...(await makeRequest(url, init, s)),
      statusText: 'Bad Gateway',
      text: async () => '<html>proxy error</html>'
    });
    const error = await new JupyterExtClient(settings, plain).listJobs().catch(e => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(502);
    expect(error.message).toBe('<html>proxy error</html>');
  });

  it('fetches an artifact’s bytes, and its errors as ApiErrors too', async () => {
    const { calls, makeRequest } = recorder(404, {
      message: 'no artifact a.png',
      reason: 'not_found'
    });
    const client = new JupyterExtClient(settings, makeRequest);
    await expect(client.artifactBlob('j1', 'a.png')).rejects.toMatchObject({
      status: 404,
      message: 'no artifact a.png',
      reason: 'not_found'
    });
    expect(calls[0].url).toBe(client.artifactUrl('j1', 'a.png'));
    const bytes = new Blob(['png']);
    const ok: MakeRequest = async () => ({ ok: true, status: 200, blob: async () => bytes }) as any;
    expect(await new JupyterExtClient(settings, ok).artifactBlob('j1', 'a.png')).toBe(bytes);
  });

  it('exposes reason and field of an error', async () => {
    const { makeRequest } = recorder(404, { message: 'no job x', reason: 'not_found' });
    const error = await new JupyterExtClient(settings, makeRequest).getJob('x').catch(e => e);
    expect(error.reason).toBe('not_found');
    expect(error.field).toBeUndefined();
  });

  it('unwraps info and artifact lists', async () => {
    const info = { version: '0.1.0', backends: ['local'], default_backend: 'local', user: 'ada' };
    const a = recorder(200, info);
    expect(await new JupyterExtClient(settings, a.makeRequest).info()).toEqual(info);
    expect(a.calls[0].url).toBe('http://host/base/jupyter-ext/api/info');
    const artifact = { name: 'plot.png', step: 'train', size: 10, mime: 'image/png' };
    const b = recorder(200, { artifacts: [artifact] });
    expect(await new JupyterExtClient(settings, b.makeRequest).artifacts('j1')).toEqual([artifact]);
    expect(b.calls[0].url).toBe('http://host/base/jupyter-ext/api/jobs/j1/artifacts');
  });

  it('goes through the real ServerConnection.makeRequest with the token and JSON type', async () => {
    const seen: any[] = [];
    class FakeRequest {
      readonly headers = new Map<string, string>();
      readonly method: string;
      readonly body: any;
      constructor(
        readonly url: string,
        init: RequestInit
      ) {
        this.method = init.method ?? 'GET';
        this.body = init.body;
        (this.headers as any).append = (k: string, v: string) => this.headers.set(k, v);
      }
    }
    // The same shape ServerConnection.makeSettings() gives in the browser (its defaults
    // read fetch/Request globals that jsdom lacks).
    const real: ServerConnection.ISettings = {
      ...settings,
      appendToken: false,
      init: { cache: 'no-store', credentials: 'same-origin' },
      Request: FakeRequest as any,
      fetch: (async (request: any) => {
        seen.push(request);
        return reply(201, { id: 'j9', status: 'queued' });
      }) as any
    };
    const client = new JupyterExtClient(real, ServerConnection.makeRequest);
    const job = await client.submit({ notebook: 'n.ipynb', backend: null });
    expect(job.id).toBe('j9');
    // no-store adds a cache-busting timestamp, as in the browser
    expect(seen[0].url).toMatch(/^http:\/\/host\/base\/jupyter-ext\/api\/jobs\?\d+$/);
    expect(seen[0].method).toBe('POST');
    expect(seen[0].headers.get('Authorization')).toBe('token tok');
    expect(seen[0].headers.get('Content-Type')).toBe('application/json');
    expect(JSON.parse(seen[0].body)).toEqual({ notebook: 'n.ipynb', backend: null });
  });

  it('deletes without expecting a body', async () => {
    const { calls, makeRequest } = recorder(204, undefined);
    await new JupyterExtClient(settings, makeRequest).remove('j1');
    expect(calls[0].init.method).toBe('DELETE');
  });
});

/** A fake WebSocket (named as such): records URLs, lets the test push messages and drops. */
class FakeWebSocket {
  static sockets: FakeWebSocket[] = [];
  onmessage: ((m: any) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeWebSocket.sockets.push(this);
  }
  push(event: Partial<IEvent> | string) {
    this.onmessage?.({ data: typeof event === 'string' ? event : JSON.stringify(event) });
  }
  /** The connection goes away: 1006 is a drop, 1000 the server's normal close. */
  drop(code = 1006) {
    this.onclose?.({ code });
  }
  close() {
    this.closed = true;
  }
}

describe('streamEvents', () => {
  beforeEach(() => {
    FakeWebSocket.sockets = [];
    jest.useFakeTimers();
  });
  afterEach(() => jest.useRealTimers());

  it('resumes after a drop from the last seq, never delivering an event twice', () => {
    const client = new JupyterExtClient(
      settings,
      recorder(200, {}).makeRequest,
      FakeWebSocket as any
    );
    const got: number[] = [];
    const stream = client.streamEvents('j1', 3, e => got.push(e.seq), { retryDelayMs: 10 });
    const first = FakeWebSocket.sockets[0];
    expect(first.url).toBe(
      'ws://host/base/jupyter-ext/api/jobs/j1/events/stream?after=3&token=tok'
    );
    first.push({ seq: 4, type: 'cell.start' });
    first.push({ seq: 5, type: 'cell.output' });
    first.drop();
    jest.advanceTimersByTime(10);
    const second = FakeWebSocket.sockets[1];
    expect(second.url).toContain('after=5');
    second.push({ seq: 5, type: 'cell.output' }); // a duplicate across the reconnect
    second.push({ seq: 6, type: 'job.end' });
    second.drop(); // after job.end: no reconnect
    jest.advanceTimersByTime(100);
    expect(got).toEqual([4, 5, 6]);
    expect(stream.lastSeq).toBe(6);
    expect(FakeWebSocket.sockets).toHaveLength(2);
  });

  it('reconnects with growing delays while nothing arrives, up to maxRetries', () => {
    const client = new JupyterExtClient(
      settings,
      recorder(200, {}).makeRequest,
      FakeWebSocket as any
    );
    client.streamEvents('j1', 0, () => undefined, { retryDelayMs: 10, maxRetries: 2 });
    FakeWebSocket.sockets[0].drop();
    jest.advanceTimersByTime(9);
    expect(FakeWebSocket.sockets).toHaveLength(1);
    jest.advanceTimersByTime(1);
    expect(FakeWebSocket.sockets).toHaveLength(2);
    FakeWebSocket.sockets[1].drop();
    jest.advanceTimersByTime(19);
    expect(FakeWebSocket.sockets).toHaveLength(2);
    jest.advanceTimersByTime(1);
    expect(FakeWebSocket.sockets).toHaveLength(3);
    FakeWebSocket.sockets[2].drop();
    jest.advanceTimersByTime(10000);
    expect(FakeWebSocket.sockets).toHaveLength(3);
  });

  it("stops when the server closes normally, skipping messages that aren't events", () => {
    const client = new JupyterExtClient(
      { ...settings, appendToken: false },
      recorder(200, {}).makeRequest,
      FakeWebSocket as any
    );
    const got: number[] = [];
    client.streamEvents('j1', 0, e => got.push(e.seq), { retryDelayMs: 10 });
    const socket = FakeWebSocket.sockets[0];
    expect(socket.url).toBe('ws://host/base/jupyter-ext/api/jobs/j1/events/stream?after=0');
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    socket.push('not json');
    expect(warn).toHaveBeenCalledTimes(1);
    warn.mockRestore();
    socket.push({ seq: 1, type: 'log' });
    socket.drop(1000);
    jest.advanceTimersByTime(1000);
    expect(got).toEqual([1]);
    expect(FakeWebSocket.sockets).toHaveLength(1);
  });

  it('dispose cancels a pending reconnect', () => {
    const client = new JupyterExtClient(
      settings,
      recorder(200, {}).makeRequest,
      FakeWebSocket as any
    );
    const stream = client.streamEvents('j1', 0, () => undefined, { retryDelayMs: 10 });
    FakeWebSocket.sockets[0].drop();
    stream.dispose();
    jest.advanceTimersByTime(100);
    expect(FakeWebSocket.sockets).toHaveLength(1);
    expect(stream.isDisposed).toBe(true);
  });

  it('stops on dispose', () => {
    const client = new JupyterExtClient(
      settings,
      recorder(200, {}).makeRequest,
      FakeWebSocket as any
    );
    const stream = client.streamEvents('j1', 0, () => undefined, { retryDelayMs: 10 });
    stream.dispose();
    FakeWebSocket.sockets[0].drop();
    jest.advanceTimersByTime(100);
    expect(FakeWebSocket.sockets).toHaveLength(1);
    expect(FakeWebSocket.sockets[0].closed).toBe(true);
  });
});
