import type { Socket } from 'node:net';
import { sign } from 'hono/jwt';
import { expect, it } from 'vitest';
import { eventually } from '../../helpers/eventually.ts';
import { admin, type MeshNode, startMesh } from '../../helpers/mesh.ts';
import { JWT_SECRET } from '../../helpers/node.ts';
import { connect, type TestClient, UpgradeRefusedError } from '../../helpers/ws-client.ts';
import { figures, SHORT, sumMetric } from '../chaos.ts';
import { rssMiB } from './abuse.ts';

/**
 * Hostile WebSocket clients against a real node process: a page from another origin, frames
 * over the size limit, a flood from one connection, a client that never reads, and more
 * connections than one address or one member may hold.
 */

const token = (member: string) => sign({ sub: member }, JWT_SECRET, 'HS256');

async function refusal(attempt: Promise<TestClient>): Promise<UpgradeRefusedError> {
  const err = await attempt.then(
    () => new Error('the upgrade was accepted'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UpgradeRefusedError);
  return err as UpgradeRefusedError;
}

async function room(node: MeshNode, id: string, members: string[]): Promise<void> {
  expect((await admin(node, 'POST', '/v1/rooms', { id })).status).toBe(201);
  for (const m of members)
    expect((await admin(node, 'PUT', `/v1/rooms/${id}/members/${m}`)).status).toBe(201);
}

it('refuses an upgrade from an Origin not in ws.allowedOrigins with 403 problem+json, before the handshake', async () => {
  const mesh = await startMesh(1, {
    THRESHOLD_WS_ALLOWED_ORIGINS: 'https://app.example.com, https://admin.example.com',
  });
  const node = mesh.pick(0);
  const alice = await token('user:alice');

  const bad = await refusal(connect(node.wsUrl, alice, 5_000, { origin: 'https://evil.example' }));
  expect(bad.status).toBe(403);
  expect(bad.headers['content-type']).toBe('application/problem+json');
  expect(JSON.parse(bad.body)).toMatchObject({ status: 403, code: 'forbidden' });
  expect(JSON.parse(bad.body).detail).toContain('ws.allowedOrigins');
  const nullOrigin = await refusal(connect(node.wsUrl, alice, 5_000, { origin: 'null' }));
  expect(nullOrigin.status).toBe(403);

  const good = await connect(node.wsUrl, alice, 5_000, { origin: 'https://admin.example.com' });
  good.send({ type: 'ping' });
  expect((await good.next()).type).toBe('pong');
  // No Origin at all: not a browser, so no page can have sent it; the token decides.
  const headless = await connect(node.wsUrl, alice);
  expect(headless.isOpen).toBe(true);
  expect(await sumMetric([node], 'threshold_websocket_refused_total{reason="origin"}')).toBe(2);
  figures('ws origin', { 'refused-403': 2, 'let-in': 2 });
});

it('closes a connection whose frame is over ws.maxFrameBytes with 1009', async () => {
  const mesh = await startMesh(1, { THRESHOLD_WS_MAX_FRAME_BYTES: '4096' });
  const node = mesh.pick(0);
  const client = await connect(node.wsUrl, await token('user:alice'));
  client.send({ type: 'publish', room: 'r', body: 'x'.repeat(5000) });
  const closed = await client.closed;
  expect(closed.code).toBe(1009);
  // The node is fine and takes new connections.
  const next = await connect(node.wsUrl, await token('user:alice'));
  next.send({ type: 'ping' });
  expect((await next.next()).type).toBe('pong');
  figures('ws oversized frame', { closed: closed.code });
});

it('rate-limits a flood from one connection (rate_limited, frames dropped), then closes it with 1008', async () => {
  const mesh = await startMesh(1, { THRESHOLD_LOG_LEVEL: 'warn' });
  const node = mesh.pick(0);
  await room(node, 'flood', ['user:mallory', 'user:alice']);
  const bystander = await connect(node.wsUrl, await token('user:alice'));
  bystander.send({ type: 'subscribe', room: 'flood', since: 0 });
  await bystander.next((f) => f.type === 'subscribed');

  const rssBefore = await rssMiB(node.url);
  const mallory = await connect(node.wsUrl, await token('user:mallory'));
  const frames = SHORT ? 5_000 : 20_000;
  const started = Date.now();
  // As fast as the socket takes them: publishes (which would each cost a commit) and pings.
  for (let i = 0; i < frames && mallory.isOpen; i++) {
    mallory.send(
      i % 2 === 0
        ? { type: 'publish', room: 'flood', body: `flood ${i}`, id: `f${i}` }
        : { type: 'ping' },
    );
  }
  const closed = await mallory.closed;
  const ms = Date.now() - started;
  const errors = mallory.frames.filter((f) => f.type === 'error' && f.code === 'rate_limited');
  const dropped = await sumMetric([node], 'threshold_rate_limited_total{limit="ws_frame"}');
  const committed = Number(
    ((await (await admin(node, 'GET', '/v1/rooms/flood')).json()) as { seq: number }).seq,
  );
  const rssAfter = await rssMiB(node.url);
  figures('ws flood', {
    frames,
    'sent-in': `${ms}ms`,
    dropped,
    'rate-limited-errors': errors.length,
    committed,
    closed: closed.code,
    'rss-MiB': `${rssBefore}→${rssAfter}`,
  });
  expect(errors.length).toBeGreaterThanOrEqual(1);
  expect(errors[0]).toMatchObject({ code: 'rate_limited' });
  expect(errors[0]?.retryAfterMs).toBeGreaterThan(0);
  expect(closed.code).toBe(1008);
  // The burst (200 frames, half of them publishes) and what the rate refilled got through,
  // not the flood; and those publishes were also under the member's publish rate (40 at once).
  expect(committed).toBeLessThanOrEqual(200);
  expect(await sumMetric([node], 'threshold_websocket_closed_total{reason="rate_limited"}')).toBe(
    1,
  );
  // The others on the node did not notice.
  bystander.send({ type: 'ping' });
  expect((await bystander.next((f) => f.type === 'pong')).type).toBe('pong');
  expect(rssAfter - rssBefore).toBeLessThan(100);
});

it('drops a client that never reads (4008) before its unsent bytes pass ws.maxBufferedBytes, node memory flat', async () => {
  const maxBuffered = 1_048_576;
  const mesh = await startMesh(1, {
    THRESHOLD_WS_MAX_BUFFERED_BYTES: String(maxBuffered),
    THRESHOLD_LOG_LEVEL: 'info',
  });
  const node = mesh.pick(0);
  await room(node, 'firehose', ['user:sloth', 'user:alice']);
  const sloth = await connect(node.wsUrl, await token('user:sloth'));
  sloth.send({ type: 'subscribe', room: 'firehose', since: 0 });
  await sloth.next((f) => f.type === 'subscribed');
  const reader = await connect(node.wsUrl, await token('user:alice'));
  reader.send({ type: 'subscribe', room: 'firehose', since: 0 });
  await reader.next((f) => f.type === 'subscribed');
  // Stop reading: the kernel's buffers fill, then the node's.
  (sloth.ws as unknown as { _socket: Socket })._socket.pause();

  const rssBefore = await rssMiB(node.url);
  const body = 'x'.repeat(3900);
  let published = 0;
  const slowClosed = () =>
    sumMetric([node], 'threshold_websocket_closed_total{reason="slow_consumer"}');
  // At most 20,000 messages (about 80 MB); stops as soon as the node has dropped the client.
  while (published < 20_000 && (published % 200 !== 0 || (await slowClosed()) === 0)) {
    await Promise.all(
      Array.from({ length: 8 }, (_, k) =>
        admin(node, 'POST', '/v1/rooms/firehose/messages', { body }).then((r) => {
          if (r.status !== 202) throw new Error(`publish ${published + k}: ${r.status}`);
        }),
      ),
    );
    published += 8;
  }
  const drops = await slowClosed();
  const rssAfter = await rssMiB(node.url);
  // The node logs what the client had left unsent when it was dropped.
  const line = await mesh.nodes[0]?.process.waitFor(/"msg":"closed a slow WebSocket consumer"/);
  const logged = node.process
    .output()
    .split('\n')
    .find((l) => l.includes('closed a slow WebSocket consumer'));
  const buffered = Number((JSON.parse(logged ?? '{}') as { buffered?: number }).buffered);
  // The reader kept up with all of it.
  const seen = await eventually(
    'the reading client to get every message',
    async () => reader.frames.filter((f) => f.type === 'message').length,
    (n) => n >= published,
    30_000,
  );
  (sloth.ws as unknown as { _socket: Socket })._socket.resume();
  const closed = await sloth.closed;
  figures('ws slow consumer', {
    'published-before-drop': published,
    'published-MiB': Math.round((published * body.length) / 1048576),
    'buffered-at-drop': buffered,
    cap: maxBuffered,
    closed: closed.code,
    'reader-got': seen,
    'rss-MiB': `${rssBefore}→${rssAfter}`,
  });
  expect(line).toBeTruthy();
  expect(drops).toBe(1);
  expect(buffered).toBeLessThanOrEqual(maxBuffered);
  expect(closed.code).toBe(4008);
  expect(rssAfter - rssBefore).toBeLessThan(100);
});

it('caps WebSocket connections per member and per address: 429 problem+json with Retry-After, freed on close', async () => {
  const mesh = await startMesh(1, {
    THRESHOLD_WS_MAX_CONNECTIONS_PER_IP: '6',
    THRESHOLD_WS_MAX_CONNECTIONS_PER_MEMBER: '3',
  });
  const node = mesh.pick(0);
  const [alice, bob, carol] = await Promise.all(
    ['user:alice', 'user:bob', 'user:carol'].map((m) => token(m)),
  );
  const alices = await Promise.all([1, 2, 3].map(() => connect(node.wsUrl, alice)));
  // Several at once: the slot is taken before the handshake, so a burst cannot overshoot.
  const burst = await Promise.allSettled([1, 2, 3].map(() => connect(node.wsUrl, alice)));
  expect(burst.every((r) => r.status === 'rejected')).toBe(true);
  const overMember = await refusal(connect(node.wsUrl, alice));
  expect(overMember.status).toBe(429);
  expect(overMember.headers['content-type']).toBe('application/problem+json');
  expect(Number(overMember.headers['retry-after'])).toBeGreaterThan(0);
  expect(JSON.parse(overMember.body)).toMatchObject({ code: 'too_many_connections' });
  expect(JSON.parse(overMember.body).detail).toContain('ws.maxConnectionsPerMember');

  const bobs = await Promise.all([1, 2, 3].map(() => connect(node.wsUrl, bob)));
  const overIp = await refusal(connect(node.wsUrl, carol));
  expect(overIp.status).toBe(429);
  expect(JSON.parse(overIp.body).detail).toContain('ws.maxConnectionsPerIp');

  // A closed connection gives its slot back (once the node has seen the socket close).
  const slotFor = (t: string | undefined) =>
    eventually(
      'a slot to free up',
      () => connect(node.wsUrl, t).catch(() => undefined),
      (c) => c !== undefined,
    );
  await bobs[0]?.close();
  expect((await slotFor(carol))?.isOpen).toBe(true);
  await alices[0]?.close();
  expect((await slotFor(alice))?.isOpen).toBe(true);
  const refused = {
    member: await sumMetric([node], 'threshold_websocket_refused_total{reason="member_limit"}'),
    ip: await sumMetric([node], 'threshold_websocket_refused_total{reason="ip_limit"}'),
  };
  figures('ws connection caps', {
    'refused-member-limit': refused.member,
    'refused-ip-limit': refused.ip,
  });
  expect(refused.member).toBeGreaterThanOrEqual(4);
  expect(refused.ip).toBeGreaterThanOrEqual(1);
});
