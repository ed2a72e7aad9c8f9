import { sign } from 'hono/jwt';
import { expect, it } from 'vitest';
import { admin, type MeshNode, startMesh } from '../../helpers/mesh.ts';
import { JWT_SECRET } from '../../helpers/node.ts';
import { connect } from '../../helpers/ws-client.ts';
import { figures, SHORT } from '../chaos.ts';

/**
 * A member's publish rate holds over the whole mesh: spreading requests round-robin over
 * three nodes gets the limit once, not three times, and every refusal says when to retry.
 */

const RATE = 10;
const BURST = 10;

interface Tally {
  accepted: number;
  refused: number;
  byNode: Map<string, number>;
  retryAfter: Set<string>;
  other: string[];
}

async function flood(
  mesh: { pick(i: number): MeshNode },
  token: string,
  room: string,
  ms: number,
): Promise<Tally> {
  const tally: Tally = {
    accepted: 0,
    refused: 0,
    byNode: new Map(),
    retryAfter: new Set(),
    other: [],
  };
  const until = Date.now() + ms;
  let i = 0;
  await Promise.all(
    Array.from({ length: 6 }, async () => {
      while (Date.now() < until) {
        const node = mesh.pick(i++);
        const res = await fetch(`${node.url}/v1/rooms/${room}/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ body: `m${i}` }),
        });
        const text = await res.text();
        if (res.status === 202) {
          tally.accepted++;
          tally.byNode.set(node.id, (tally.byNode.get(node.id) ?? 0) + 1);
        } else if (
          res.status === 429 &&
          res.headers.get('content-type') === 'application/problem+json' &&
          JSON.parse(text).code === 'rate_limited'
        ) {
          tally.refused++;
          tally.retryAfter.add(res.headers.get('retry-after') ?? 'none');
        } else tally.other.push(`${res.status} ${text}`);
      }
    }),
  );
  return tally;
}

it('holds a member to its publish rate across three nodes (not 3 × the limit), with Retry-After', async () => {
  const mesh = await startMesh(3, {
    THRESHOLD_RATE_LIMIT_PUBLISH_PER_SECOND: String(RATE),
    THRESHOLD_RATE_LIMIT_PUBLISH_BURST: String(BURST),
  });
  const first = mesh.pick(0);
  expect((await admin(first, 'POST', '/v1/rooms', { id: 'limited' })).status).toBe(201);
  for (const m of ['user:alice', 'user:bob'])
    expect((await admin(first, 'PUT', `/v1/rooms/limited/members/${m}`)).status).toBe(201);
  const [alice, bob] = await Promise.all(
    ['user:alice', 'user:bob'].map((m) => sign({ sub: m }, JWT_SECRET, 'HS256')),
  );

  const ms = SHORT ? 2_000 : 5_000;
  const started = Date.now();
  // Alice floods round-robin over the three nodes; Bob, at the same time, has his own limit.
  const [a, b] = await Promise.all([
    flood(mesh, alice as string, 'limited', ms),
    flood(mesh, bob as string, 'limited', ms),
  ]);
  const seconds = (Date.now() - started) / 1000;
  const allowed = BURST + RATE * seconds;
  figures('rate limit across 3 nodes', {
    rate: `${RATE}/s`,
    burst: BURST,
    over: `${seconds.toFixed(1)}s`,
    allowed: Math.round(allowed),
    'alice-accepted': a.accepted,
    'alice-refused': a.refused,
    'alice-per-node': [...a.byNode.values()].join('/'),
    'bob-accepted': b.accepted,
    'bob-refused': b.refused,
    'retry-after': `${[...a.retryAfter].join(',')}s`,
  });
  for (const t of [a, b]) {
    expect(t.other.slice(0, 3)).toEqual([]);
    expect(t.refused).toBeGreaterThan(0);
    // The limit once over the mesh (a little slack for the time the last requests took), far
    // from the 3 × it would be if each node counted on its own.
    expect(t.accepted).toBeLessThanOrEqual(Math.ceil(allowed * 1.1) + 2);
    expect(t.accepted).toBeGreaterThanOrEqual(Math.floor(RATE * seconds * 0.8));
    // Every node took some: the requests really were spread.
    expect(t.byNode.size).toBe(3);
    expect([...t.retryAfter].every((s) => Number(s) >= 1)).toBe(true);
  }

  // Over WebSocket the same limit answers with an error frame carrying retryAfterMs.
  const ws = await connect(mesh.pick(1).wsUrl, alice);
  for (let i = 0; i < BURST + 5; i++)
    ws.send({ type: 'publish', room: 'limited', body: `ws ${i}`, id: `w${i}` });
  const limited = await ws.next((f) => f.type === 'error' && f.code === 'rate_limited');
  expect(limited).toMatchObject({ room: 'limited' });
  expect(limited.retryAfterMs).toBeGreaterThan(0);
  expect(String(limited.id)).toMatch(/^w\d+$/);
});
