import { ApiError, JupyterExtClient, MakeRequest } from '../client';
import { IEvent } from '../tokens';

const settings: any = {
  baseUrl: 'http://host/base/',
  wsUrl: 'ws://host/base/',
  token: 'tok'
};

function reply(status: number, body: any): Response {
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText: 'X',
    text: async () => (body === undefined ? '' : JSON.stringify(body))
  } as any;
}

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
  onclose: (() => void) | null = null;
  closed = false;
  constructor(readonly url: string) {
    FakeWebSocket.sockets.push(this);
  }
  push(event: Partial<IEvent>) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  drop() {
    this.onclose?.();
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
