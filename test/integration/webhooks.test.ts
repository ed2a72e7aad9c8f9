import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sign } from 'hono/jwt';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChannelJob, DeliveryChannel } from '../../src/delivery/channel.ts';
import { createWebhookChannel } from '../../src/delivery/channels/webhook.ts';
import { parseRetryAfter } from '../../src/delivery/retry-policy.ts';
import {
  generateSecret,
  secretProblem,
  WebhookEndpoints,
} from '../../src/delivery/webhook-endpoints.ts';
import { type AppDeps, createApp } from '../../src/http/app.ts';
import { Auth } from '../../src/http/auth.ts';
import { mountWebhooks } from '../../src/http/webhooks.ts';
import type { Ingress } from '../../src/ingress/ingress.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import type { RoomsStore } from '../../src/rooms/store.ts';
import { deleteKeys, uniquePrefix, useRedis } from '../helpers/redis.ts';

const ADMIN_TOKEN = 'admin-secret';
const JWT_SECRET = 'jwt-secret';

const redis = useRedis();
const prefix = uniquePrefix('webhooks');
const keys = new Keys(prefix, 8);
const endpoints = new WebhookEndpoints(redis, keys);
afterAll(() => deleteKeys(redis, prefix));

/** The admin API over the real endpoint store; routes other than webhooks are never called. */
const app = createApp({
  auth: new Auth({ adminToken: ADMIN_TOKEN, jwtSecret: JWT_SECRET, devMode: false }),
  cluster: { state: async () => ({}) as never, leastLoaded: async () => undefined },
  rooms: {} as RoomsStore,
  ingress: {} as Ingress,
  history: {
    since: async () => ({ messages: [], last: 0 }),
    before: async () => ({ messages: [], next: null }),
    status: async () => undefined,
  },
  metrics: new Metrics(),
  health: { ready: () => true, draining: () => false },
  log: createLogger('silent'),
  options: { maxBodyBytes: 65536, maxBodyChars: 4000 },
} satisfies AppDeps);
mountWebhooks(app, { endpoints });

function admin(method: string, path: string, body?: unknown): Promise<Response> {
  return Promise.resolve(
    app.request(path, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }),
  );
}

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
  /** What `Webhook(secret).verify` returned, or the error it threw. */
  verified: unknown;
}

/**
 * A receiver on 127.0.0.1 that verifies every request with the endpoint's secret (looked up
 * by path: `/<name>`) and answers what `answer` says.
 */
class Receiver {
  readonly received: Received[] = [];
  readonly secrets = new Map<string, string>();
  answer: () => { status: number; headers?: Record<string, string> } | 'hang' = () => ({
    status: 200,
  });
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const secret = this.secrets.get((req.url ?? '').slice(1)) ?? '';
        let verified: unknown;
        try {
          verified = new Webhook(secret).verify(body, req.headers as Record<string, string>);
        } catch (err) {
          verified = err;
        }
        this.received.push({ headers: req.headers, body, verified });
        const answer = this.answer();
        if (answer === 'hang') return;
        res.writeHead(answer.status, answer.headers).end();
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

const receiver = new Receiver();
beforeAll(() => receiver.start());
afterAll(() => receiver.stop());

const stopping = new AbortController();
afterAll(() => stopping.abort());
const channel: DeliveryChannel = createWebhookChannel(
  { name: 'webhook', options: {}, log: createLogger('silent'), signal: stopping.signal },
  { endpoints, timeoutMs: 500 },
);

let jobs = 0;
function job(name: string): ChannelJob {
  const n = ++jobs;
  return {
    deliveryId: `msg_${n}:webhook:${name}`,
    channel: 'webhook',
    member: `webhook:${name}`,
    room: 'garden',
    attempt: 0,
    message: {
      id: `http:${n}`,
      seq: n,
      body: `hello ${n}`,
      sender: { kind: 'user', id: 'alice' },
      kind: 'chat',
      ts: 1_700_000_000_000 + n,
    },
  };
}

/** Creates endpoint `name` on the receiver (over the admin API) and returns its secret. */
async function endpoint(name: string): Promise<string> {
  const res = await admin('PUT', `/v1/webhooks/${name}`, { url: `${receiver.url}/${name}` });
  expect(res.status).toBe(201);
  const { secret } = (await res.json()) as { secret: string };
  receiver.secrets.set(name, secret);
  return secret;
}

function lastRequest(): Received {
  const last = receiver.received.at(-1);
  if (!last) throw new Error('the receiver got no request');
  return last;
}

describe('webhook channel', () => {
  it('POSTs the message frame, signed the Standard Webhooks way, and reports 200 as delivered', async () => {
    await endpoint('billing');
    receiver.answer = () => ({ status: 200 });
    const sent = job('billing');
    expect(await channel.send(sent)).toEqual({ status: 'delivered' });

    const { headers, body, verified } = lastRequest();
    expect(verified).not.toBeInstanceOf(Error);
    expect(verified).toEqual({
      type: 'message',
      room: 'garden',
      seq: sent.message.seq,
      id: sent.message.id,
      sender: { kind: 'user', id: 'alice' },
      kind: 'chat',
      body: sent.message.body,
      ts: sent.message.ts,
    });
    expect(headers['content-type']).toBe('application/json');
    expect(headers['webhook-id']).toBe(sent.deliveryId);
    expect(Number(headers['webhook-timestamp'])).toBeCloseTo(Date.now() / 1000, -1);
    // Signed with the endpoint's secret, not just any.
    expect(() =>
      new Webhook(generateSecret()).verify(body, headers as Record<string, string>),
    ).toThrow(/signature/i);
  });

  it('sends media when the message has some', async () => {
    await endpoint('media');
    const sent = job('media');
    sent.message.media = ['https://example.com/cat.jpg'];
    expect((await channel.send(sent)).status).toBe('delivered');
    expect(lastRequest().verified).toMatchObject({ media: ['https://example.com/cat.jpg'] });
  });

  it('retries a 503, honouring Retry-After in seconds or as an HTTP date', async () => {
    await endpoint('busy');
    receiver.answer = () => ({ status: 503, headers: { 'retry-after': '7' } });
    expect(await channel.send(job('busy'))).toEqual({
      status: 'retry',
      code: '503',
      retryAfterMs: 7000,
      error: 'HTTP 503',
    });
    expect(lastRequest().verified).not.toBeInstanceOf(Error);

    const later = new Date(Date.now() + 30_000).toUTCString();
    receiver.answer = () => ({ status: 503, headers: { 'retry-after': later } });
    const dated = await channel.send(job('busy'));
    expect(dated.status).toBe('retry');
    expect(dated.retryAfterMs).toBeGreaterThan(25_000);
    expect(dated.retryAfterMs).toBeLessThanOrEqual(30_000);

    receiver.answer = () => ({ status: 429 });
    expect(await channel.send(job('busy'))).toEqual({
      status: 'retry',
      code: '429',
      error: 'HTTP 429',
    });
  });

  it('fails other 4xx answers, and redirects, for good', async () => {
    await endpoint('strict');
    receiver.answer = () => ({ status: 400 });
    expect(await channel.send(job('strict'))).toEqual({
      status: 'failed',
      code: '400',
      error: 'HTTP 400',
    });
    receiver.answer = () => ({ status: 308, headers: { location: 'https://example.com/' } });
    expect(await channel.send(job('strict'))).toEqual({
      status: 'failed',
      code: '308',
      error: 'HTTP 308',
    });
  });

  it('disables an endpoint that answers 410 Gone, and a PUT enables it again', async () => {
    const secret = await endpoint('gone');
    receiver.answer = () => ({ status: 410 });
    const first = await channel.send(job('gone'));
    expect(first.status).toBe('failed');
    expect(first.error).toContain('410 Gone');

    const shown = (await (await admin('GET', '/v1/webhooks/gone')).json()) as Record<
      string,
      unknown
    >;
    expect(shown).toMatchObject({
      name: 'gone',
      disabled: true,
      disabledReason: `410 Gone from ${receiver.url}/gone`,
    });
    expect(shown).not.toHaveProperty('secret');

    // Disabled on this node at once: nothing is sent any more.
    const before = receiver.received.length;
    receiver.answer = () => ({ status: 200 });
    expect(await channel.send(job('gone'))).toMatchObject({ status: 'failed' });
    expect(receiver.received.length).toBe(before);

    const put = await admin('PUT', '/v1/webhooks/gone', { url: `${receiver.url}/gone` });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({
      name: 'gone',
      url: `${receiver.url}/gone`,
      disabled: false,
    });
    expect(await (await admin('GET', '/v1/webhooks/gone')).json()).not.toHaveProperty(
      'disabledReason',
    );
    expect(await channel.send(job('gone'))).toEqual({ status: 'delivered' });
    // Re-enabled with its old secret: the receiver's copy still verifies.
    expect(receiver.secrets.get('gone')).toBe(secret);
    expect(lastRequest().verified).not.toBeInstanceOf(Error);
  });

  it('fails a delivery to an unknown or deleted endpoint', async () => {
    expect(await channel.send(job('nobody'))).toEqual({
      status: 'failed',
      error: 'no webhook endpoint nobody',
    });
    await endpoint('brief');
    expect((await channel.send(job('brief'))).status).toBe('delivered');
    expect((await admin('DELETE', '/v1/webhooks/brief')).status).toBe(204);
    expect(await channel.send(job('brief'))).toEqual({
      status: 'failed',
      error: 'no webhook endpoint brief',
    });
  });

  it('retries when the endpoint does not answer in time or cannot be reached', async () => {
    await endpoint('slow');
    receiver.answer = () => 'hang';
    const slow = await channel.send(job('slow'));
    expect(slow.status).toBe('retry');
    expect(slow.error).toMatch(/no answer within 500 ms/);
    receiver.answer = () => ({ status: 200 });

    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await admin('PUT', '/v1/webhooks/refused', { url: `http://127.0.0.1:${port}/` });
    const refused = await channel.send(job('refused'));
    expect(refused.status).toBe('retry');
    expect(refused.error).toMatch(/ECONNREFUSED/);
  });
});

describe('webhook admin API', () => {
  it('shows a generated secret once, on create, and never on GET or update', async () => {
    const created = await admin('PUT', '/v1/webhooks/orders', { url: 'https://example.com/a' });
    expect(created.status).toBe(201);
    const body = (await created.json()) as { secret: string };
    expect(body).toEqual({
      name: 'orders',
      url: 'https://example.com/a',
      disabled: false,
      secret: expect.stringMatching(/^whsec_/),
    });
    expect(secretProblem(body.secret)).toBeUndefined();

    const got = await admin('GET', '/v1/webhooks/orders');
    expect(got.status).toBe(200);
    const shown = (await got.json()) as Record<string, unknown>;
    expect(shown).toMatchObject({ name: 'orders', url: 'https://example.com/a', disabled: false });
    expect(typeof shown.createdAt).toBe('number');
    expect(shown).not.toHaveProperty('secret');

    const updated = await admin('PUT', '/v1/webhooks/orders', { url: 'https://example.com/b' });
    expect(updated.status).toBe(200);
    expect(await updated.json()).toEqual({
      name: 'orders',
      url: 'https://example.com/b',
      disabled: false,
    });
    // The update kept the secret the receiver has.
    expect((await endpoints.lookup('orders'))?.secret).toBe(body.secret);
  });

  it('takes a secret of the caller, without echoing it', async () => {
    const secret = generateSecret();
    const res = await admin('PUT', '/v1/webhooks/own-secret', {
      url: 'http://example.com/hook',
      secret,
    });
    expect(res.status).toBe(201);
    expect(await res.json()).not.toHaveProperty('secret');
    expect((await endpoints.lookup('own-secret'))?.secret).toBe(secret);
  });

  it('deletes an endpoint: 204, then 404', async () => {
    await admin('PUT', '/v1/webhooks/temp', { url: 'https://example.com/' });
    expect((await admin('DELETE', '/v1/webhooks/temp')).status).toBe(204);
    expect((await admin('GET', '/v1/webhooks/temp')).status).toBe(404);
    expect((await admin('DELETE', '/v1/webhooks/temp')).status).toBe(404);
  });

  it('answers 404 problem+json for an unknown endpoint', async () => {
    const res = await admin('GET', '/v1/webhooks/unknown');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await res.json()).toMatchObject({ code: 'not_found' });
  });

  it.each([
    [{ url: 'ftp://example.com/' }, 'url'],
    [{ url: 'not a url' }, 'url'],
    [{}, 'url'],
    [{ url: 'https://example.com/', secret: 'hunter2' }, 'secret'],
    [{ url: 'https://example.com/', secret: 'whsec_c2hvcnQ=' }, 'secret'],
    [{ url: 'https://example.com/', extra: 1 }, 'extra'],
  ])('answers 400 to %j, naming %s', async (body, field) => {
    const res = await admin('PUT', '/v1/webhooks/bad', body);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'invalid_request', field });
  });

  it('answers 400 to a bad endpoint name', async () => {
    const res = await admin('PUT', '/v1/webhooks/Bad%20Name', { url: 'https://example.com/' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ field: 'name' });
  });

  it('takes the admin token: 401 without credentials, 403 for a member', async () => {
    const put = { method: 'PUT', body: JSON.stringify({ url: 'https://example.com/' }) };
    expect((await app.request('/v1/webhooks/x', put)).status).toBe(401);
    expect((await app.request('/v1/webhooks/x')).status).toBe(401);
    const token = await sign(
      { sub: 'user:alice', exp: Math.floor(Date.now() / 1000) + 60 },
      JWT_SECRET,
      'HS256',
    );
    const member = { authorization: `Bearer ${token}` };
    expect((await app.request('/v1/webhooks/x', { ...put, headers: member })).status).toBe(403);
    expect((await app.request('/v1/webhooks/x', { headers: member })).status).toBe(403);
    expect(
      (await app.request('/v1/webhooks/x', { method: 'DELETE', headers: member })).status,
    ).toBe(403);
    expect(await endpoints.get('x')).toBeUndefined();
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  it.each([
    [null, undefined],
    ['0', 0],
    ['120', 120_000],
    ['Wed, 01 Jan 2025 00:01:00 GMT', 60_000],
    ['Tue, 31 Dec 2024 23:00:00 GMT', 0],
    ['soon', undefined],
    ['-5', undefined],
  ])('reads %j as %j ms', (header, ms) => {
    expect(parseRetryAfter(header, now)).toBe(ms);
  });
});
