import { describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { BlockedByCors, pageFetch } from '../helpers/page-fetch.ts';

/** The page's origin: another port than the node's, so another origin. */
const PAGE = 'http://127.0.0.1:5173';

/** What the page's script does: ask where to connect, then publish with its token. */
async function connectAndPublish(node: TestNode, room: string) {
  const authorization = `Bearer ${await node.token('user:ann')}`;
  const connect = await pageFetch(PAGE, `${node.url}/v1/connect`, { headers: { authorization } });
  const publish = await pageFetch(PAGE, `${node.url}/v1/rooms/${room}/messages?wait=1`, {
    method: 'POST',
    headers: {
      authorization,
      'content-type': 'application/json',
      'idempotency-key': 'page-1',
    },
    body: JSON.stringify({ body: 'from the page' }),
  });
  return { connect, publish };
}

async function history(node: TestNode, room: string): Promise<unknown[]> {
  const res = await node.admin('GET', `/v1/rooms/${room}/messages`);
  return ((await res.json()) as { messages: unknown[] }).messages;
}

describe('CORS: a page on another origin', () => {
  it('calls /v1/connect and publishes over HTTP when http.allowedOrigins names its origin', async () => {
    const node = await startTestNode({
      name: 'cors-allowed',
      overrides: { http: { allowedOrigins: 'https://app.example.com, HTTP://127.0.0.1:5173/' } },
    });
    await node.createRoom('lobby', ['user:ann']);

    const { connect, publish } = await connectAndPublish(node, 'lobby');
    expect(connect.status).toBe(200);
    expect(JSON.parse(connect.text)).toMatchObject({ url: `${node.wsUrl}` });
    expect(connect.wire).toEqual([
      { method: 'OPTIONS', status: 204 },
      { method: 'GET', status: 200 },
    ]);
    expect(publish.status).toBe(201);
    expect(JSON.parse(publish.text)).toMatchObject({ seq: 1, status: 'committed' });
    expect(await history(node, 'lobby')).toHaveLength(1);
  });

  it('reads an error (problem+json) and its Retry-After', async () => {
    const node = await startTestNode({
      name: 'cors-errors',
      overrides: { http: { allowedOrigins: PAGE }, rateLimit: { publishBurst: 1 } },
    });
    await node.createRoom('lobby', ['user:ann']);
    const authorization = `Bearer ${await node.token('user:ann')}`;
    const send = () =>
      pageFetch(PAGE, `${node.url}/v1/rooms/lobby/messages`, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json' },
        body: JSON.stringify({ body: 'hi' }),
      });
    expect((await send()).status).toBe(202);
    const limited = await send();
    expect(limited.status).toBe(429);
    expect(limited.headers.get('content-type')).toBe('application/problem+json');
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(limited.text)).toMatchObject({ code: 'rate_limited' });
  });

  it('is refused when its origin is not allowed: the preflight gets 403 and nothing is published', async () => {
    const node = await startTestNode({
      name: 'cors-refused',
      overrides: { http: { allowedOrigins: 'https://app.example.com' } },
    });
    await node.createRoom('lobby', ['user:ann']);

    const attempt = connectAndPublish(node, 'lobby');
    await expect(attempt).rejects.toBeInstanceOf(TypeError);
    const err = await attempt.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlockedByCors);
    expect((err as BlockedByCors).wire).toEqual([{ method: 'OPTIONS', status: 403 }]);

    // The browser stops at the preflight; a script that skips it (curl) learns why.
    const preflight = await fetch(`${node.url}/v1/rooms/lobby/messages`, {
      method: 'OPTIONS',
      headers: { origin: PAGE, 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(403);
    expect(preflight.headers.get('content-type')).toBe('application/problem+json');
    expect(((await preflight.json()) as { detail: string }).detail).toContain(
      'http.allowedOrigins',
    );
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    expect(await history(node, 'lobby')).toHaveLength(0);
  });

  it('follows ws.allowedOrigins while http.allowedOrigins is empty', async () => {
    const allowed = await startTestNode({
      name: 'cors-ws-allowed',
      overrides: { ws: { allowedOrigins: PAGE } },
    });
    await allowed.createRoom('lobby', ['user:ann']);
    const { publish } = await connectAndPublish(allowed, 'lobby');
    expect(publish.status).toBe(201);

    const refused = await startTestNode({
      name: 'cors-ws-refused',
      overrides: { ws: { allowedOrigins: 'https://app.example.com' } },
    });
    await refused.createRoom('lobby', ['user:ann']);
    await expect(connectAndPublish(refused, 'lobby')).rejects.toBeInstanceOf(TypeError);
    expect(await history(refused, 'lobby')).toHaveLength(0);
  });
});
