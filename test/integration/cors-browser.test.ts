/**
 * Issue 18's CORS must-show, in a real browser: a page served from another origin calls
 * `/v1/connect` and publishes over HTTP when `http.allowedOrigins` names its origin, and is
 * refused when not. Both pages and the node are on 127.0.0.1 (loopback to loopback: no
 * Private Network Access preflight), on different ports, so different origins.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Page } from 'playwright-core';
import { describe, expect, it, onTestFinished } from 'vitest';
import { launchBrowser, newPage } from '../helpers/browser.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

/** A loopback server answering every GET with a blank page: an origin of its own. */
async function pageOrigin(): Promise<string> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>app</title><p>app');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Outcome {
  connect?: { status: number; body: unknown };
  publish?: { status: number; body: unknown };
  /** `TypeError: Failed to fetch` when the browser refused. */
  error?: string;
}

/** What the page's own script does: ask where to connect, then publish with its token. */
function connectAndPublish(page: Page, node: string, room: string, token: string) {
  return page.evaluate(
    async ({ node, room, token }): Promise<Outcome> => {
      const out: Outcome = {};
      try {
        // A bearer token (and a JSON body): not "simple" requests, so each is preflighted.
        const authorization = `Bearer ${token}`;
        const connect = await fetch(`${node}/v1/connect`, { headers: { authorization } });
        out.connect = { status: connect.status, body: await connect.json() };
        const publish = await fetch(`${node}/v1/rooms/${room}/messages?wait=1`, {
          method: 'POST',
          headers: { authorization, 'content-type': 'application/json' },
          body: JSON.stringify({ body: 'from the page' }),
        });
        out.publish = { status: publish.status, body: await publish.json() };
      } catch (err) {
        out.error = `${(err as Error).name}: ${(err as Error).message}`;
      }
      return out;
    },
    { node, room, token },
  );
}

async function history(node: TestNode, room: string) {
  const res = await node.admin('GET', `/v1/rooms/${room}/messages?since=0`);
  return ((await res.json()) as { messages: { seq: number; body: string }[] }).messages;
}

describe('CORS in a browser: a page on another origin', () => {
  it('calls /v1/connect and publishes when its origin is allowed, and is refused when not', async () => {
    const [allowed, other] = await Promise.all([pageOrigin(), pageOrigin()]);
    const node = await startTestNode({
      name: 'cors-browser',
      overrides: { http: { allowedOrigins: allowed } },
    });
    await node.createRoom('lobby', ['user:ann']);
    const token = await node.token('user:ann');
    const browser = await launchBrowser();

    const pageA = await newPage(browser);
    await pageA.goto(`${allowed}/`);
    const a = await connectAndPublish(pageA, node.url, 'lobby', token);
    expect(a.error).toBeUndefined();
    expect(a.connect).toEqual({
      status: 200,
      body: expect.objectContaining({ url: node.wsUrl }),
    });
    expect(a.publish).toEqual({
      status: 201,
      body: expect.objectContaining({ seq: 1, status: 'committed' }),
    });
    expect(await history(node, 'lobby')).toMatchObject([{ seq: 1, body: 'from the page' }]);

    // The other origin: each preflight gets 403 without Access-Control-Allow-Origin, so the
    // browser sends neither the GET nor the POST, and the page's fetch rejects.
    const pageB = await newPage(browser);
    await pageB.goto(`${other}/`);
    const b = await connectAndPublish(pageB, node.url, 'lobby', token);
    expect(b.error).toMatch(/^TypeError/);
    expect(b.connect).toBeUndefined();
    expect(b.publish).toBeUndefined();
    // Same page, publishing straight away: refused at the preflight.
    const direct = await pageB.evaluate(
      async ({ node, token }) =>
        fetch(`${node}/v1/rooms/lobby/messages?wait=1`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ body: 'refused' }),
        }).then(
          (r) => `status ${r.status}`,
          (err: Error) => `${err.name}: ${err.message}`,
        ),
      { node: node.url, token },
    );
    expect(direct).toMatch(/^TypeError/);
    // Nothing from the refused page was committed.
    expect(await history(node, 'lobby')).toHaveLength(1);
  }, 60_000);
});
