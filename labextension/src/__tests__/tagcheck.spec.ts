import { TagChecker } from '../tagcheck';

/**
 * A FAKE server for the checker: each request waits until the test answers it (or fails it),
 * so the order of answers is the test's to choose.
 */
function fakeServer() {
  const pending: { request: string; answer: (v: string) => void; fail: (e: Error) => void }[] = [];
  const send = (request: string) =>
    new Promise<string>((answer, fail) => pending.push({ request, answer, fail }));
  return { pending, send };
}

describe('TagChecker', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('sends once, 300 ms after the last request', async () => {
    const server = fakeServer();
    const checker = new TagChecker(server.send, 300);
    checker.request('a');
    await jest.advanceTimersByTimeAsync(200);
    checker.request('ab');
    await jest.advanceTimersByTimeAsync(200);
    checker.request('abc');
    expect(checker.state).toBe('waiting');
    await jest.advanceTimersByTimeAsync(299);
    expect(server.pending).toEqual([]);
    await jest.advanceTimersByTimeAsync(1);
    expect(server.pending.map(p => p.request)).toEqual(['abc']);
    server.pending[0].answer('ABC');
    await checker.settled();
    expect(checker.state).toBe('ready');
    expect(checker.result).toBe('ABC');
  });

  it('keeps one request in flight and drops the answer to a stale one', async () => {
    const server = fakeServer();
    const checker = new TagChecker(server.send, 300);
    const seen: (string | null)[] = [];
    checker.changed.connect(() => seen.push(checker.state === 'ready' ? checker.result : null));
    checker.request('old');
    await jest.advanceTimersByTimeAsync(300);
    checker.request('new');
    await jest.advanceTimersByTimeAsync(300);
    expect(server.pending.map(p => p.request)).toEqual(['old']); // 'new' waits its turn
    server.pending[0].answer('OLD');
    await jest.advanceTimersByTimeAsync(0);
    expect(checker.result).toBeNull(); // dropped: the notebook changed since
    expect(checker.state).toBe('waiting');
    expect(server.pending.map(p => p.request)).toEqual(['old', 'new']);
    server.pending[1].answer('NEW');
    await checker.settled();
    expect(checker.result).toBe('NEW');
    expect(seen.filter(s => s !== null)).toEqual(['NEW']); // 'OLD' was never shown
  });

  it('says the server could not be reached, and recovers on the next request', async () => {
    const server = fakeServer();
    const checker = new TagChecker(server.send, 300);
    checker.request('a');
    await jest.advanceTimersByTimeAsync(300);
    server.pending[0].fail(new TypeError('Failed to fetch'));
    await checker.settled();
    expect(checker.state).toBe('failed');
    expect(checker.error).toBe('Failed to fetch');
    const now = checker.now('b'); // no delay
    await jest.advanceTimersByTimeAsync(0);
    expect(server.pending.map(p => p.request)).toEqual(['a', 'b']);
    server.pending[1].answer('B');
    await expect(now).resolves.toBe('B');
    expect(checker.state).toBe('ready');
    expect(checker.error).toBe('');
  });

  it('rejects now() when the server cannot answer', async () => {
    const server = fakeServer();
    const checker = new TagChecker(server.send, 300);
    const now = checker.now('a');
    await jest.advanceTimersByTimeAsync(0);
    server.pending[0].fail(new Error('Bad Gateway'));
    await expect(now).rejects.toThrow('Bad Gateway');
  });

  it('sends nothing once disposed', async () => {
    const server = fakeServer();
    const checker = new TagChecker(server.send, 300);
    checker.request('a');
    checker.dispose();
    await jest.advanceTimersByTimeAsync(1000);
    expect(server.pending).toEqual([]);
    await checker.settled(); // resolves at once
  });
});
