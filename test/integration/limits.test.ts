import { pbkdf2 } from 'node:crypto';
import { request } from 'node:http';
import { connect as tcp } from 'node:net';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/errors.ts';
import { PublishRateLimiter } from '../../src/ingress/rate-limit.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { eventually } from '../helpers/eventually.ts';
import { connect as connectRedis, deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { startTestNode } from '../helpers/node.ts';
import { connect, UpgradeRefusedError } from '../helpers/ws-client.ts';

/** The limits of README "Abuse and limits", one by one (the chaos suite pushes them harder). */
describe('limits', () => {
  it('holds a member to its publish rate (429 problem+json with Retry-After); the admin token is exempt', async () => {
    const node = await startTestNode({
      name: 'publish rate',
      // Slow enough that no token comes back while the test runs (one every 10 s).
      overrides: { rateLimit: { publishPerSecond: 0.1, publishBurst: 2 } },
    });
    await node.createRoom('calm', ['user:ann']);
    const ann = await node.token('user:ann');
    const publish = (token: string) =>
      fetch(`${node.url}/v1/rooms/calm/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ body: 'hi' }),
      });
    expect((await publish(ann)).status).toBe(202);
    expect((await publish(ann)).status).toBe(202);
    const over = await publish(ann);
    expect(over.status).toBe(429);
    expect(over.headers.get('content-type')).toBe('application/problem+json');
    expect(over.headers.get('retry-after')).toBe('10');
    expect(await over.json()).toMatchObject({ status: 429, code: 'rate_limited' });
    for (let i = 0; i < 5; i++) expect((await publish('admin-token')).status).toBe(202);

    // Over WebSocket: an error frame for that publish, with retryAfterMs.
    const ws = await connect(node.wsUrl, ann);
    ws.send({ type: 'publish', room: 'calm', body: 'hi', id: 'p1' });
    const frame = await ws.next();
    expect(frame).toMatchObject({ type: 'error', code: 'rate_limited', id: 'p1', room: 'calm' });
    expect(frame.retryAfterMs).toBeGreaterThan(0);
    expect(frame.retryAfterMs).toBeLessThanOrEqual(10_000);
  });

  it('answers 503 when Redis is unreachable, and fails open (counted) when only the rate script fails', async () => {
    const limiter = (redis: Redis, prefix: string, metrics: Metrics) =>
      new PublishRateLimiter(
        defineScripts(redis),
        new Keys(prefix, 8),
        metrics,
        { perSecond: 1, burst: 1 },
        createLogger('silent'),
      );
    // Redis away: the 503 the funnel would give (it needs the same Redis), not a second wait.
    const down = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    const metrics = new Metrics();
    await expect(limiter(down, 'thr:', metrics).take('user:ann')).rejects.toBeInstanceOf(
      UnavailableError,
    );
    down.disconnect();

    // Redis answers but the script fails (the key holds another type): let through, counted.
    const redis = connectRedis();
    const prefix = uniquePrefix('rate script fails');
    await redis.rpush(new Keys(prefix, 8).rateLimit('user:ann'), 'not a number');
    const failing = limiter(redis, prefix, metrics);
    await failing.take('user:ann');
    await failing.take('user:ann');
    expect(
      await metrics.registry.getSingleMetricAsString('threshold_rate_limiter_errors_total'),
    ).toMatch(/threshold_rate_limiter_errors_total 2$/);
    await deleteKeys(redis, prefix);
    await redis.quit();
  });

  it('drops frames over a connection’s rate with one rate_limited error, and closes a flood with 1008', async () => {
    const node = await startTestNode({
      name: 'frame rate',
      overrides: { ws: { framesPerSecond: 5, frameBurst: 5, maxDroppedFrames: 20 } },
    });
    const client = await connect(node.wsUrl, await node.token('user:fast'));
    for (let i = 0; i < 100; i++) client.send({ type: 'ping' });
    const closed = await client.closed;
    expect(closed.code).toBe(1008);
    const pongs = client.frames.filter((f) => f.type === 'pong');
    const errors = client.frames.filter((f) => f.type === 'error');
    expect(pongs.length).toBeGreaterThanOrEqual(5);
    expect(pongs.length).toBeLessThan(10);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'rate_limited' });
  });

  it('does not close a client that only bursts over its frame rate now and then', async () => {
    const node = await startTestNode({
      name: 'frame bursts',
      overrides: { ws: { framesPerSecond: 50, frameBurst: 10, maxDroppedFrames: 20 } },
    });
    const client = await connect(node.wsUrl, await node.token('user:bursty'));
    for (let burst = 0; burst < 3; burst++) {
      if (burst > 0) await new Promise((r) => setTimeout(r, 1000));
      // 10 frames go through, 15 are dropped: over the rate, but within its patience.
      for (let i = 0; i < 25; i++) client.send({ type: 'ping' });
      await client.next((f) => f.type === 'error');
    }
    // Once the rate allows again, frames go through as before.
    await new Promise((r) => setTimeout(r, 300));
    client.send({ type: 'ping' });
    const pongs = await eventually(
      'the last pong',
      async () => client.frames.filter((f) => f.type === 'pong').length,
      (n) => n >= 31,
    );
    // 10 per burst and the last one; a slow run lets the bucket refill a few more (one per 20 ms).
    expect(pongs).toBeLessThanOrEqual(40);
    expect(client.isOpen).toBe(true);
    expect(client.frames.filter((f) => f.type === 'error').length).toBeGreaterThanOrEqual(3);
  });

  it('refuses an upgrade over the per-member cap (429 problem+json, Retry-After) or from a foreign Origin (403)', async () => {
    const node = await startTestNode({
      name: 'ws caps',
      // Configured in another case and with a slash: browsers send `https://app.example.com`.
      overrides: { ws: { maxConnectionsPerMember: 1, allowedOrigins: 'HTTPS://App.Example.com/' } },
    });
    const token = await node.token('user:ann');
    const first = await connect(node.wsUrl, token);
    const second = await connect(node.wsUrl, token).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(UpgradeRefusedError);
    const refused = second as UpgradeRefusedError;
    expect(refused.status).toBe(429);
    expect(refused.headers['retry-after']).toBe('5');
    expect(JSON.parse(refused.body)).toMatchObject({ code: 'too_many_connections' });
    await first.close();
    // The slot comes back once the socket is closed.
    const again = await eventually(
      'the slot back',
      () => connect(node.wsUrl, token).catch(() => undefined),
      (c) => c !== undefined,
    );
    expect(again?.isOpen).toBe(true);
    await again?.close();

    const foreign = await connect(node.wsUrl, await node.token('user:bob'), 5_000, {
      origin: 'https://evil.example',
    }).catch((e: unknown) => e);
    expect(foreign).toBeInstanceOf(UpgradeRefusedError);
    expect((foreign as UpgradeRefusedError).status).toBe(403);
    expect((foreign as UpgradeRefusedError).headers['content-type']).toBe(
      'application/problem+json',
    );
    const browser = await connect(node.wsUrl, await node.token('user:bob'), 5_000, {
      origin: 'https://app.example.com',
    });
    expect(browser.isOpen).toBe(true);
    await browser.close();
  });

  it('gives the connection slot back when a client resets during the upgrade', async () => {
    const cap = 2;
    const node = await startTestNode({
      name: 'upgrade reset',
      overrides: { ws: { maxConnectionsPerMember: cap } },
    });
    const { port } = new URL(node.url);
    const token = await node.token('user:flaky');
    const request = [
      `GET /v1/ws?token=${token} HTTP/1.1`,
      'host: 127.0.0.1',
      'connection: Upgrade',
      'upgrade: websocket',
      'sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==',
      'sec-websocket-version: 13',
      '\r\n',
    ].join('\r\n');
    // The node checks the token on libuv's thread pool (WebCrypto): keeping the pool busy holds
    // each upgrade inside that check long enough for the client's reset to land in it.
    const busy = Array.from(
      { length: 8 },
      () => new Promise((resolve) => pbkdf2('x', 'y', 400_000, 32, 'sha256', resolve)),
    );
    const reset = () =>
      new Promise<void>((resolve, reject) => {
        const socket = tcp({ host: '127.0.0.1', port: Number(port) }, () => {
          socket.write(request, () =>
            setTimeout(() => {
              socket.resetAndDestroy();
              resolve();
            }, 20),
          );
        });
        socket.on('error', reject);
      });
    await Promise.all(Array.from({ length: cap * 2 }, reset));
    await Promise.all(busy);
    // Every slot is free again: the member opens as many connections as the cap allows.
    const clients = await eventually(
      `${cap} connections`,
      async () => {
        const opened = await Promise.all(
          Array.from({ length: cap }, () => connect(node.wsUrl, token).catch(() => undefined)),
        );
        for (const c of opened) c?.terminate();
        return opened.filter((c) => c !== undefined).length;
      },
      (n) => n === cap,
      5_000,
    );
    expect(clients).toBe(cap);
  });

  it('answers malformed requests with problem+json: a bad handshake header, a duplicate Content-Length', async () => {
    const node = await startTestNode({ name: 'malformed' });
    const { port } = new URL(node.url);
    const token = await node.token('user:ann');
    const upgrade = (method: string, key: string, protocol = 'websocket') =>
      new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
        const req = request({
          method,
          port,
          host: '127.0.0.1',
          path: `/v1/ws?token=${token}`,
          headers: {
            connection: 'Upgrade',
            upgrade: protocol,
            'sec-websocket-key': key,
            'sec-websocket-version': '13',
          },
        });
        req.on('response', (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'] ?? '', body }),
          );
        });
        req.on('error', reject);
        req.end();
      });
    for (const [method, key, field, protocol] of [
      ['GET', 'not-a-key', 'Sec-WebSocket-Key'],
      ['GET', 'dGhlIHNhbXBsZSBub25jZQ==', 'Upgrade', 'h2c'],
      // Hono routes HEAD to GET handlers: without the check ws would answer an HTML 405.
      ['HEAD', 'dGhlIHNhbXBsZSBub25jZQ==', undefined],
    ] as const) {
      const answer = await upgrade(method, key, protocol);
      expect(answer.status).toBe(400);
      expect(answer.type).toBe('application/problem+json');
      if (field) expect(JSON.parse(answer.body)).toMatchObject({ field });
    }

    const raw = await new Promise<string>((resolve, reject) => {
      const socket = tcp({ host: '127.0.0.1', port: Number(port) }, () =>
        socket.write(
          'POST /v1/rooms HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}',
        ),
      );
      let text = '';
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toContain('content-type: application/problem+json');
    expect(raw).toContain('"code":"bad_http_request"');
  });
});
