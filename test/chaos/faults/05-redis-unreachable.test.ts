/**
 * Scenario 5: Redis stops answering for 10 s (SIGSTOP: connections stay open, nothing
 * comes back; the worst kind of outage for a client library). Ingress answers 503
 * problem+json with Retry-After within a bounded time instead of hanging, over HTTP (with
 * the admin token and a member's, which the rate limiter checks in Redis first) and WebSocket; when Redis answers again the nodes recover by themselves (/readyz 200,
 * publishes commit) and nothing acknowledged is lost.
 */
import { expect, it } from 'vitest';
import { sign } from 'hono/jwt';
import { ADMIN_TOKEN, JWT_SECRET } from '../../helpers/node.ts';
import { admin, type MeshNode, sleep, startMesh, waitReady } from '../../helpers/mesh.ts';
import { createRooms, underLoad } from '../../helpers/room-load.ts';
import { connect, type Frame } from '../../helpers/ws-client.ts';
import { figures, length } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures } from '../history.ts';

const OUTAGE_MS = length(10_000, 10_000);
/** A client waits at most this long for an answer; more counts as a hang. */
const CLIENT_TIMEOUT_MS = 20_000;

interface Probe {
  status: number;
  ms: number;
  problem: boolean;
  retryAfter: string | null;
  /** When the answer came (ms since epoch). */
  at: number;
}

/**
 * One publish over HTTP to `room`, timed; status 0 when the client gave up (a hang). A member's
 * publish asks the shared rate limiter (Redis) first; the admin token's does not.
 */
async function probeHttp(node: MeshNode, token: string, room: string, key: string) {
  const started = Date.now();
  try {
    const res = await fetch(`${node.url}/v1/rooms/${room}/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'idempotency-key': key,
      },
      body: JSON.stringify({ body: 'probe' }),
      signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
    });
    await res.arrayBuffer();
    return {
      status: res.status,
      ms: Date.now() - started,
      at: Date.now(),
      problem: res.headers.get('content-type')?.startsWith('application/problem+json') ?? false,
      retryAfter: res.headers.get('retry-after'),
    } satisfies Probe;
  } catch {
    return {
      status: 0,
      ms: Date.now() - started,
      problem: false,
      retryAfter: null,
      at: Date.now(),
    } satisfies Probe;
  }
}

it('Redis unreachable for 10 s: ingress answers 503 promptly (HTTP and WebSocket), nodes recover by themselves', async () => {
  const mesh = await startMesh(3);
  const rooms = await createRooms(mesh, 16);
  expect((await admin(mesh.pick(0), 'POST', '/v1/rooms', { id: 'members' })).status).toBe(201);
  expect((await admin(mesh.pick(0), 'PUT', '/v1/rooms/members/members/user:prober')).status).toBe(
    201,
  );
  const memberToken = await sign({ sub: 'user:prober' }, JWT_SECRET, 'HS256');
  const probes: Probe[] = [];
  const memberProbes: Probe[] = [];
  const wsAnswers: { frame: Frame | undefined; ms: number }[] = [];
  let recoveredMs = 0;
  let resumedAt = 0;
  const redisPid = mesh.redis.pid as number;

  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      const ws = await connect(mesh.nodes[0]!.wsUrl, ADMIN_TOKEN);
      process.kill(redisPid, 'SIGSTOP');
      const stoppedAt = Date.now();
      const pending: Promise<void>[] = [];
      try {
        for (let i = 0; Date.now() - stoppedAt < OUTAGE_MS - 500; i++) {
          for (const node of mesh.nodes) {
            const key = `probe-${node.id}-${i}`;
            pending.push(
              probeHttp(node, ADMIN_TOKEN, 'r0', key).then((p) => void probes.push(p)),
              probeHttp(node, memberToken, 'members', key).then((p) => void memberProbes.push(p)),
            );
          }
          if (i % 4 === 0) {
            const id = `ws-probe-${i}`;
            const sent = Date.now();
            ws.send({ type: 'publish', room: 'r1', body: 'probe', id });
            pending.push(
              ws
                .next((f) => f.id === id || (f.type === 'error' && f.id === id), CLIENT_TIMEOUT_MS)
                .then(
                  (frame) => void wsAnswers.push({ frame, ms: Date.now() - sent }),
                  () => void wsAnswers.push({ frame: undefined, ms: Date.now() - sent }),
                ),
            );
          }
          await sleep(500);
        }
        await sleep(Math.max(0, OUTAGE_MS - (Date.now() - stoppedAt)));
      } finally {
        process.kill(redisPid, 'SIGCONT');
      }
      resumedAt = Date.now();
      await Promise.all(pending);
      await Promise.all(mesh.nodes.map((n) => waitReady(n, 30_000)));
      recoveredMs = Date.now() - resumedAt;
      await ws.close();
    },
    { beforeMs: 2_000, afterMs: 4_000 },
  );

  const check = checkHistory(result);
  const unavailable = probes.filter((p) => p.status === 503);
  const slowest = Math.max(...probes.map((p) => p.ms));
  const memberSlowest = Math.max(...memberProbes.map((p) => p.ms));
  const wsSlowest = Math.max(...wsAnswers.map((a) => a.ms));
  figures('redis-unreachable', {
    outage: `${OUTAGE_MS}ms`,
    probes: probes.length,
    'answered-503': unavailable.length,
    'answered-during-outage': probes.filter((p) => p.at < resumedAt).length,
    'answered-202': probes.filter((p) => p.status === 202).length,
    hung: probes.filter((p) => p.status === 0).length,
    'slowest-answer': `${slowest}ms`,
    'member-probes': memberProbes.length,
    'member-statuses': [...new Set(memberProbes.map((p) => p.status))].join('/'),
    'member-slowest-answer': `${memberSlowest}ms`,
    'ws-probes': wsAnswers.length,
    'ws-slowest-answer': `${wsSlowest}ms`,
    'ready-after-return': `${recoveredMs}ms`,
    ...historyFigures(check),
  });

  // Bounded answers, never a hang: 503 while Redis was away; a request still waiting for
  // its command when Redis came back may have gone through (202).
  expect(probes.every((p) => p.status === 202 || p.status === 503)).toBe(true);
  expect(probes.filter((p) => p.at < resumedAt).every((p) => p.status === 503)).toBe(true);
  expect(unavailable.length).toBeGreaterThan(10);
  for (const p of unavailable) expect(p).toMatchObject({ problem: true, retryAfter: '1' });
  expect(slowest).toBeLessThan(10_000);
  // A member's publish asks the rate limiter first: the same 503, within the same bound (the
  // limiter does not make it wait out a command timeout of its own before the funnel's).
  // Redis runs the limiter commands it held when it comes back, those that timed out too: the
  // member may be over its burst just then (429).
  expect(memberProbes.every((p) => [202, 429, 503].includes(p.status))).toBe(true);
  expect(memberProbes.filter((p) => p.at < resumedAt).every((p) => p.status === 503)).toBe(true);
  for (const p of memberProbes.filter((m) => m.status === 503))
    expect(p).toMatchObject({ problem: true, retryAfter: '1' });
  expect(memberSlowest).toBeLessThan(10_000);
  expect(wsAnswers.every((a) => a.frame !== undefined)).toBe(true);
  expect(wsAnswers.some((a) => a.frame?.type === 'error')).toBe(true);
  expect(wsSlowest).toBeLessThan(10_000);
  // Recovered without a restart, and nothing acknowledged went missing.
  for (const n of mesh.nodes) expect(n.process.child.exitCode).toBeNull();
  expect(recoveredMs).toBeLessThan(30_000);
  expectNoAnomalies(check);
}, 180_000);
