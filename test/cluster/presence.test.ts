import { sign } from 'hono/jwt';
import { describe, expect, it } from 'vitest';
import { admin, type MeshNode, sleep, startMesh } from '../helpers/mesh.ts';
import { JWT_SECRET } from '../helpers/node.ts';
import { connect, type Frame } from '../helpers/ws-client.ts';

/** The defaults of config/default.json, which the mesh's processes run with. */
const NODE_TTL_MS = 3000;
const HEARTBEAT_MS = 500;

const token = (member: string) =>
  sign({ sub: member, exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET, 'HS256');

async function online(node: MeshNode, room: string): Promise<string[]> {
  const res = await admin(node, 'GET', `/v1/rooms/${room}/presence`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { online: string[] }).online;
}

const isPresence = (member: string, on: boolean) => (f: Frame) =>
  f.type === 'presence' && f.member === member && f.online === on;

/** Presence over two node processes: a member's WebSocket on one node counts on every node. */
describe('presence over a mesh', () => {
  it('a member connected to node A is online on node B, and offline within the node ttl after A is killed', async () => {
    const mesh = await startMesh(2);
    const [a, b] = mesh.nodes as [MeshNode, MeshNode];
    await mesh.agreement();
    expect((await admin(a, 'POST', '/v1/rooms', { id: 'lobby' })).status).toBe(201);
    for (const m of ['user:ann', 'user:bea'])
      expect((await admin(a, 'PUT', `/v1/rooms/lobby/members/${m}`)).status).toBe(201);

    const bea = await connect(b.wsUrl, await token('user:bea'));
    bea.send({ type: 'subscribe', room: 'lobby' });
    await bea.next((f) => f.type === 'subscribed');
    const ann = await connect(a.wsUrl, await token('user:ann'));
    await ann.welcome;
    await bea.next(isPresence('user:ann', true));
    expect(await online(b, 'lobby')).toEqual(['user:ann', 'user:bea']);
    expect(await online(a, 'lobby')).toEqual(['user:ann', 'user:bea']);

    const killed = Date.now();
    mesh.signal(a, 'SIGKILL');
    let offlineAfter = 0;
    while (Date.now() - killed < NODE_TTL_MS + 5_000) {
      if (!(await online(b, 'lobby')).includes('user:ann')) {
        offlineAfter = Date.now() - killed;
        break;
      }
      await sleep(50);
    }
    expect(offlineAfter, 'user:ann still online on node B').toBeGreaterThan(0);
    await bea.next(isPresence('user:ann', false), NODE_TTL_MS + 5_000);
    const framed = Date.now() - killed;
    console.log(
      `presence: user:ann offline on node B ${offlineAfter} ms after node A was killed ` +
        `(frame after ${framed} ms; node ttl ${NODE_TTL_MS} ms, heartbeat ${HEARTBEAT_MS} ms)`,
    );
    expect(offlineAfter).toBeLessThan(NODE_TTL_MS + 2 * HEARTBEAT_MS + 500);
    expect(await online(b, 'lobby')).toEqual(['user:bea']);
  }, 60_000);
});
