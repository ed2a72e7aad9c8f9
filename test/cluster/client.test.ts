import { sign } from 'hono/jwt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { WebSocket } from 'ws';
import { type RoomMessage, ThresholdClient } from '../../src/client/index.ts';
import { admin, type MeshNode, sleep, startMesh } from '../helpers/mesh.ts';
import { JWT_SECRET } from '../helpers/node.ts';

const COUNT = 200;
/** Messages posted before the client's node is killed. */
const KILL_AT = 60;
/** Messages the client publishes itself meanwhile. */
const REPLIES = 60;

const token = (member: string) =>
  sign({ sub: member, exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET, 'HS256');

describe('ThresholdClient over a mesh', () => {
  it('survives a SIGKILL of its node mid-stream: every message once, in order; every publish committed once', async () => {
    const mesh = await startMesh(2);
    const nodes = [...mesh.nodes] as [MeshNode, MeshNode];
    await mesh.agreement();
    expect((await admin(nodes[0], 'POST', '/v1/rooms', { id: 'stream' })).status).toBe(201);
    expect((await admin(nodes[0], 'PUT', '/v1/rooms/stream/members/user:ann')).status).toBe(201);
    expect((await admin(nodes[0], 'POST', '/v1/rooms', { id: 'replies' })).status).toBe(201);
    expect((await admin(nodes[0], 'PUT', '/v1/rooms/replies/members/user:ann')).status).toBe(201);

    const client = new ThresholdClient({
      urls: nodes.map((n) => n.url),
      token: () => token('user:ann'),
      WebSocket,
    });
    onTestFinished(() => client.close());
    const states: string[] = [];
    let reopenedAt = 0;
    client.on('state', (s) => {
      states.push(s);
      if (s === 'open' && killedAt) reopenedAt = Date.now();
    });
    const seen: RoomMessage[] = [];
    let killedAt = 0;
    client.subscribe('stream', (m) => seen.push(m), { since: 0 });
    await client.connect();

    // Kill the node /v1/connect sent the client to; publish through the other one.
    const connected = nodes.find((n) => n.wsUrl === client.socketUrl);
    expect(connected, `client on ${client.socketUrl}`).toBeDefined();
    const survivor = nodes.find((n) => n !== connected)!;

    // Meanwhile the client publishes too, one at a time, across the kill.
    const acks: number[] = [];
    let ackedBeforeKill = 0;
    const replying = (async () => {
      for (let j = 1; j <= REPLIES; j++) {
        acks.push((await client.publish('replies', `r${j}`)).seq);
        await sleep(20);
      }
    })();

    for (let i = 1; i <= COUNT; i++) {
      const res = await admin(survivor, 'POST', '/v1/rooms/stream/messages', { body: `m${i}` });
      expect(res.status, await res.clone().text()).toBe(202);
      if (i === KILL_AT) {
        // Let the stream reach the client first, so the kill lands mid-stream.
        while (seen.length < KILL_AT / 2) await sleep(10);
        mesh.signal(connected!, 'SIGKILL');
        killedAt = Date.now();
        ackedBeforeKill = acks.length;
      }
      await sleep(10);
    }

    const deadline = Date.now() + 30_000;
    while (seen.length < COUNT && Date.now() < deadline) await sleep(50);
    const resumed = Date.now() - killedAt;
    await replying;
    expect(acks).toEqual(Array.from({ length: REPLIES }, (_, j) => j + 1));
    const history = (await (
      await admin(survivor, 'GET', `/v1/rooms/replies/messages?since=0&limit=100`)
    ).json()) as { messages: { body: string }[] };
    expect(history.messages.map((m) => m.body)).toEqual(
      Array.from({ length: REPLIES }, (_, j) => `r${j + 1}`),
    );
    expect(seen.map((m) => m.seq)).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1));
    expect(seen.map((m) => m.body)).toEqual(Array.from({ length: COUNT }, (_, i) => `m${i + 1}`));
    expect(client.socketUrl).toBe(survivor.wsUrl);
    expect(client.status).toBe('open');
    expect(states.filter((s) => s === 'open').length).toBeGreaterThanOrEqual(2);
    console.log(
      `client: ${connected!.id} killed after ${KILL_AT} posts; all ${COUNT} messages seen once, ` +
        `in order, ${resumed} ms after the kill; reconnected after ${reopenedAt - killedAt} ms (states ${states.join(' → ')}); ` +
        `${ackedBeforeKill} of the client's ${REPLIES} publishes acked before the kill`,
    );
  }, 90_000);
});
