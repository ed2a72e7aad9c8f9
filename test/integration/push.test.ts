import { randomBytes } from 'node:crypto';
import webpush from 'web-push';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { MAX_PUSH_PAYLOAD_BYTES } from '../../src/delivery/channels/push.ts';
import { Keys } from '../../src/redis/keys.ts';
import { wakeChannel } from '../../src/redis/stream-wakes.ts';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode, type TestNode, useTestNode } from '../helpers/node.ts';
import { deleteKeys, onRedisCluster, uniquePrefix, useRedis } from '../helpers/redis.ts';
import { type Browser, type PushStandin, startPushStandin } from '../push/standin.ts';

const SUBJECT = 'mailto:push-test@example.test';
const redis = useRedis();

let service: PushStandin;
beforeAll(async () => {
  service = await startPushStandin({ subject: SUBJECT });
});
afterAll(() => service.close());

const node = useTestNode({
  name: 'push',
  overrides: {
    push: { subject: SUBJECT, ttlSeconds: 600, maxSubscriptionsPerMember: 2 },
    outbox: { backoffBaseMs: 50, backoffMaxMs: 200 },
  },
});

/** A request as `member` (a member token), or with the admin token. */
async function as(who: string, method: string, path: string, body?: unknown): Promise<Response> {
  const token = who === 'admin' ? 'admin-token' : await node().token(who);
  return fetch(`${node().url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

const register = (member: string, b: Pick<Browser, 'endpoint' | 'keys'>) =>
  as(member, 'PUT', '/v1/me/push', { endpoint: b.endpoint, keys: b.keys });

const endpoints = async (member: string) =>
  (
    (await (await as(member, 'GET', '/v1/me/push')).json()) as {
      subscriptions: { endpoint: string }[];
    }
  ).subscriptions.map((s) => s.endpoint);

/**
 * An outbox job naming the push channel, as the notification side will write one: XADDed to
 * the room's partition outbox (and announced, on a cluster, as the scripts do).
 */
async function enqueue(
  to: string,
  {
    body = 'the kettle is on',
    fields = {},
  }: { body?: string; fields?: Record<string, string> } = {},
): Promise<string> {
  const keys = new Keys(node().prefix, 8);
  const room = 'kitchen';
  const outbox = keys.outbox(keys.partitionOf(room));
  const msg = `test:${randomBytes(6).toString('hex')}`;
  const frame = {
    type: 'message',
    room,
    seq: 7,
    id: msg,
    sender: { kind: 'user', id: 'zed' },
    kind: 'notification',
    body,
    ts: 1_700_000_000_000,
  };
  await redis.xadd(
    outbox,
    '*',
    ...['ch', 'push', 'kind', 'relay', 'd', `${room}~${to}~${msg}`, 'to', to, 'room', room],
    ...['msg', msg, 'attempt', '0', 'm', JSON.stringify(frame)],
    ...Object.entries(fields).flat(),
  );
  if (onRedisCluster()) await redis.spublish(wakeChannel(outbox), '');
  return msg;
}

async function metric(pattern: RegExp): Promise<string | undefined> {
  const text = await (await fetch(`${node().url}/metrics`)).text();
  return text.split('\n').find((line) => pattern.test(line));
}

describe('the VAPID key', () => {
  it('GET /v1/push/key answers without credentials, with a 65-byte P-256 public key', async () => {
    const res = await fetch(`${node().url}/v1/push/key`);
    expect(res.status).toBe(200);
    const { publicKey } = (await res.json()) as { publicKey: string };
    expect(Buffer.from(publicKey, 'base64url')).toHaveLength(65);
    const stored = JSON.parse((await redis.get(`${node().prefix}push:vapid`)) ?? '{}') as {
      publicKey?: string;
    };
    expect(stored.publicKey).toBe(publicKey);
  });

  it('is generated once: two nodes starting together and a node started later share one pair; configured keys win', async () => {
    const prefix = uniquePrefix('push-vapid');
    onTestFinished(async () => {
      await deleteKeys(redis, prefix);
    });
    const key = async (n: TestNode) =>
      ((await (await fetch(`${n.url}/v1/push/key`)).json()) as { publicKey: string }).publicKey;
    const overrides = { keyPrefix: prefix };
    const [a, b] = await Promise.all([
      startTestNode({ name: 'vapid-a', overrides }),
      startTestNode({ name: 'vapid-b', overrides }),
    ]);
    const shared = await key(a);
    expect(await key(b)).toBe(shared);
    await Promise.all([a.stop(), b.stop()]);

    const later = await startTestNode({ name: 'vapid-c', overrides });
    expect(await key(later)).toBe(shared);
    await later.stop();

    const mine = webpush.generateVAPIDKeys();
    const configured = await startTestNode({
      name: 'vapid-d',
      overrides: {
        ...overrides,
        push: { vapidPublicKey: mine.publicKey, vapidPrivateKey: mine.privateKey },
      },
    });
    expect(await key(configured)).toBe(mine.publicKey);
  });
});

describe('PUT, GET and DELETE /v1/me/push', () => {
  it('registers (201), replaces (200), lists and removes (204, then 404) a subscription', async () => {
    const browser = service.subscribe();
    expect((await register('user:ann', browser)).status).toBe(201);
    expect(await (await register('user:ann', browser)).json()).toEqual({
      endpoint: browser.endpoint,
    });
    // As a browser's PushSubscription.toJSON() gives it.
    const again = await as('user:ann', 'PUT', '/v1/me/push', {
      endpoint: browser.endpoint,
      expirationTime: null,
      keys: browser.keys,
    });
    expect(again.status).toBe(200);
    const listed = (await (await as('user:ann', 'GET', '/v1/me/push')).json()) as {
      subscriptions: Record<string, unknown>[];
    };
    expect(listed.subscriptions).toEqual([
      { endpoint: browser.endpoint, addedAt: expect.any(Number) },
    ]);

    const path = `/v1/me/push?endpoint=${encodeURIComponent(browser.endpoint)}`;
    expect((await as('user:ann', 'DELETE', path)).status).toBe(204);
    expect((await as('user:ann', 'DELETE', path)).status).toBe(404);
    expect(await endpoints('user:ann')).toEqual([]);
    expect((await as('user:ann', 'DELETE', '/v1/me/push')).status).toBe(400);
  });

  it('refuses bad subscriptions with a 400 naming the field', async () => {
    const { keys } = service.subscribe();
    const field = async (body: unknown) => {
      const res = await as('user:bea', 'PUT', '/v1/me/push', body);
      expect(res.status).toBe(400);
      return ((await res.json()) as { field?: string }).field;
    };
    const endpoint = `${service.url}/push/x`;
    expect(await field({ endpoint: 'http://push.example.test/x', keys })).toBe('endpoint');
    expect(await field({ endpoint: 'not a url', keys })).toBe('endpoint');
    expect(await field({ endpoint, keys: { ...keys, p256dh: 'AAAA' } })).toBe('keys.p256dh');
    // 65 bytes, but not a point on the curve.
    const offCurve = Buffer.alloc(65, 7);
    offCurve[0] = 4;
    expect(
      await field({ endpoint, keys: { ...keys, p256dh: offCurve.toString('base64url') } }),
    ).toBe('keys.p256dh');
    expect(
      await field({ endpoint, keys: { ...keys, auth: randomBytes(12).toString('base64url') } }),
    ).toBe('keys.auth');
    expect(await field({ endpoint, keys: { ...keys, auth: 'no+padding/here' } })).toBe('keys.auth');
    expect(await field({ endpoint })).toBe('keys');
    expect(await field({ endpoint, keys, extra: 1 })).toBe('extra');
    // https anywhere is fine.
    const https = await as('user:bea', 'PUT', '/v1/me/push', {
      endpoint: 'https://push.example.test/abc',
      keys,
    });
    expect(https.status).toBe(201);
  });

  it('is a member route: 403 with the admin token, 401 without credentials', async () => {
    const browser = service.subscribe();
    expect((await register('admin', browser)).status).toBe(403);
    expect((await as('admin', 'GET', '/v1/me/push')).status).toBe(403);
    const anonymous = await fetch(`${node().url}/v1/me/push`);
    expect(anonymous.status).toBe(401);
  });

  it('refuses a subscription over push.maxSubscriptionsPerMember with 409 (replacing one is fine)', async () => {
    const [one, two, three] = [service.subscribe(), service.subscribe(), service.subscribe()];
    expect((await register('user:cal', one)).status).toBe(201);
    expect((await register('user:cal', two)).status).toBe(201);
    const over = await register('user:cal', three);
    expect(over.status).toBe(409);
    expect((await register('user:cal', two)).status).toBe(200);
    expect((await endpoints('user:cal')).sort()).toEqual([one.endpoint, two.endpoint].sort());
  });
});

describe('the push channel', () => {
  it('sends each subscription the notification, encrypted and VAPID-signed, with TTL and urgency', async () => {
    const [phone, laptop] = [service.subscribe(), service.subscribe()];
    await register('user:dot', phone);
    await register('user:dot', laptop);
    const msg = await enqueue('user:dot', {
      fields: { priority: 'high', data: JSON.stringify({ url: '/rooms/kitchen' }) },
    });
    const got = await eventually(
      'both devices have it',
      async () => service.received.filter((r) => r.payload.id === msg),
      (r) => r.length === 2,
    );
    const { publicKey } = (await (await fetch(`${node().url}/v1/push/key`)).json()) as {
      publicKey: string;
    };
    expect(got.map((r) => r.endpoint).sort()).toEqual([phone.endpoint, laptop.endpoint].sort());
    for (const r of got) {
      expect(r).toMatchObject({ ttl: '600', urgency: 'high', vapidKey: publicKey });
      expect(r.payload).toEqual({
        type: 'notification',
        id: msg,
        room: 'kitchen',
        body: 'the kettle is on',
        sender: { kind: 'user', id: 'zed' },
        data: { url: '/rooms/kitchen' },
        ts: 1_700_000_000_000,
      });
    }
    expect(service.refused).toEqual([]);
    await eventually(
      'the job counted as sent',
      () => metric(/^threshold_outbox_jobs_total\{channel="push",outcome="sent",code=""\}/),
      (line) => line !== undefined,
    );
  });

  it('cuts a body too long for one push record, with an ellipsis', async () => {
    const browser = service.subscribe();
    await register('user:eve', browser);
    const msg = await enqueue('user:eve', { body: 'ü'.repeat(5000) });
    const [got] = await eventually(
      'the long one',
      async () => service.received.filter((r) => r.payload.id === msg),
      (r) => r.length === 1,
    );
    expect(got?.bytes).toBeLessThanOrEqual(MAX_PUSH_PAYLOAD_BYTES);
    expect(got?.bytes).toBeGreaterThan(MAX_PUSH_PAYLOAD_BYTES - 4);
    expect(got?.payload.body).toMatch(/^ü+…$/);
    expect(got?.urgency).toBe('normal');
  });

  it('removes a subscription the push service says is gone (410, 404); the others still get it', async () => {
    const [gone, missing, fine] = [service.subscribe(), service.subscribe(), service.subscribe()];
    gone.answer = 410;
    missing.answer = 404;
    await register('user:fay', gone);
    await register('user:fay', missing);
    const msg = await enqueue('user:fay');
    await eventually(
      'both removed',
      () => endpoints('user:fay'),
      (e) => e.length === 0,
    );
    expect(service.attempts(gone.endpoint)).toBe(1);
    expect(service.attempts(missing.endpoint)).toBe(1);
    expect(service.received.filter((r) => r.payload.id === msg)).toEqual([]);
    // Every subscription gone: failed, not dead-lettered, not retried.
    await eventually(
      'counted as failed',
      () =>
        metric(/^threshold_outbox_jobs_total\{channel="push",outcome="failed",code="(410|404)"\}/),
      (line) => line !== undefined,
    );

    await register('user:fay', fine);
    const next = await enqueue('user:fay');
    await eventually(
      'the remaining device has it',
      async () => service.received.filter((r) => r.payload.id === next),
      (r) => r.length === 1,
    );
    expect(service.attempts(gone.endpoint)).toBe(1);
  });

  it('retries a 429 after its Retry-After, then delivers', async () => {
    const browser = service.subscribe();
    browser.answer = 429;
    browser.retryAfter = 1;
    await register('user:gil', browser);
    const started = Date.now();
    const msg = await enqueue('user:gil');
    await eventually(
      'the first attempt',
      async () => service.attempts(browser.endpoint),
      (n) => n >= 1,
    );
    browser.answer = 201;
    await eventually(
      'delivered on retry',
      async () => service.received.filter((r) => r.payload.id === msg),
      (r) => r.length === 1,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(service.attempts(browser.endpoint)).toBe(2);
  });

  it('fails a member with no subscription as skipped, without a dead letter', async () => {
    const deadBefore = await redis.xlen(`${node().prefix}dead`);
    await enqueue('user:hal');
    await eventually(
      'counted as skipped',
      () =>
        metric(
          /^threshold_outbox_jobs_total\{channel="push",outcome="skipped",code="no_subscription"\} 1$/,
        ),
      (line) => line !== undefined,
    );
    expect(await redis.xlen(`${node().prefix}dead`)).toBe(deadBefore);
  });

  it('does not claim user: at commit: a user member of a room still gets no outbox job', async () => {
    // The room's members are routed by prefix; user: stays on the live path.
    await node().createRoom('hall', ['user:ivy', 'user:jon']);
    const res = await node().admin('POST', '/v1/rooms/hall/messages?wait=1', { body: 'hi' });
    expect(res.status).toBe(201);
    const { id } = (await res.json()) as { id: string };
    const status = (await (await node().admin('GET', `/v1/messages/${id}?room=hall`)).json()) as {
      recipients: number;
      channels?: Record<string, unknown>;
    };
    expect(status.channels?.push).toBeUndefined();
  });
});
