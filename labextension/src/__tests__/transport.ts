/** A server connection for the client's tests: settings and a canned `Response`. */

export const settings: any = {
  baseUrl: 'http://host/base/',
  wsUrl: 'ws://host/base/',
  token: 'tok',
  appendToken: true
};

/** A response with `body` as JSON (an empty body when undefined). */
export function reply(status: number, body: any): Response {
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText: 'X',
    text: async () => (body === undefined ? '' : JSON.stringify(body))
  } as any;
}
