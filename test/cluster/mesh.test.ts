/**
 * Three relay node processes on one Redis (P = 64): one picture of who owns what, and
 * clients served the same whichever node they talk to.
 */
import { sign } from 'hono/jwt';
import { describe, expect, it } from 'vitest';
import type { ClusterState } from '../../src/mesh/cluster-view.ts';
import { Keys } from '../../src/redis/keys.ts';
import { admin, PARTITIONS, sleep, startMesh } from '../helpers/mesh.ts';
import { JWT_SECRET } from '../helpers/node.ts';
import { connect } from '../helpers/ws-client.ts';

const keys = new Keys('thr:', PARTITIONS);

describe('three nodes on one Redis', () => {
  it('agree on one owner for every partition, and every node owns some', async () => {
    const started = Date.now();
    const mesh = await startMesh(3);
    const { ms, owners } = await mesh.agreement();
    const counts = mesh.nodes.map((n) => owners.filter((o) => o === n.id).length);
    console.log(
      `3 nodes agreed ${Date.now() - started} ms after the first was spawned (${ms} ms after all ` +
        `were ready); partitions per node: ${counts.join(', ')}`,
    );
    expect(owners).toHaveLength(PARTITIONS);
    expect(counts.every((c) => c > 0)).toBe(true);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(PARTITIONS);

    // /v1/cluster lists every node with what an operator needs to find it.
    const view = (await (await admin(mesh.pick(0), 'GET', '/v1/cluster')).json()) as ClusterState;
    expect(view.nodes.map((n) => n.url).sort()).toEqual(mesh.nodes.map((n) => n.url).sort());
    expect(view.nodes[0]).toMatchObject({ connections: 0, version: expect.any(String) });

    // Metrics show the same picture.
    const metrics = await (await fetch(`${mesh.pick(0).url}/metrics`)).text();
    expect(metrics).toMatch(/^threshold_nodes_live 3$/m);
    expect(metrics).toContain(`threshold_partitions_owned ${counts[0]}`);
    expect(metrics).toMatch(/^threshold_handoff_seconds_count [1-9]/m);
  }, 40_000);

  it('routes receipts back to the node that accepted the message, whichever node owns the room', async () => {
    const mesh = await startMesh(3);
    const { owners } = await mesh.agreement();
    // A room owned by node-1, used from node-2 and node-3.
    let room = '';
    for (let i = 0; !room; i++)
      if (owners[keys.partitionOf(`cross${i}`)] === 'node-1') room = `cross${i}`;
    const [, second, third] = mesh.nodes;
    if (!second || !third) throw new Error('three nodes expected');
    expect((await admin(second, 'POST', '/v1/rooms', { id: room })).status).toBe(201);
    expect((await admin(second, 'PUT', `/v1/rooms/${room}/members/user:ana`)).status).toBe(201);

    const token = await sign(
      { sub: 'user:ana', exp: Math.floor(Date.now() / 1000) + 600 },
      JWT_SECRET,
      'HS256',
    );
    const ws = await connect(second.wsUrl, token);
    ws.send({ type: 'subscribe', room });
    await ws.next((f) => f.type === 'subscribed');
    ws.send({ type: 'publish', room, body: 'from node-2', id: 'c1' });
    expect(await ws.next((f) => f.type === 'ack')).toMatchObject({ id: 'c1', seq: 1 });

    const res = await admin(third, 'POST', `/v1/rooms/${room}/messages?wait=1`, {
      body: 'from node-3',
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ seq: 2 });

    await ws.next((f) => f.type === 'message' && f.seq === 2);
    const messages = ws.frames.filter((f) => f.type === 'message');
    expect(messages.map((m) => [m.seq, m.body])).toEqual([
      [1, 'from node-2'],
      [2, 'from node-3'],
    ]);
  }, 40_000);

  it('sends clients asking /v1/connect to the node with the fewest connections', async () => {
    const mesh = await startMesh(3);
    await mesh.agreement();
    const perNode = new Map<string, number>();
    for (let i = 0; i < 6; i++) {
      const res = await admin(mesh.pick(i), 'GET', '/v1/connect');
      expect(res.status).toBe(200);
      const { url, node } = (await res.json()) as { url: string; node: string };
      await connect(url, 'admin-token');
      perNode.set(node, (perNode.get(node) ?? 0) + 1);
      // Wait for the node's next heartbeat to publish its new connection count.
      for (let tries = 0; tries < 50; tries++) {
        const view = await mesh.cluster(mesh.pick(0));
        if (view.nodes.find((n) => n.id === node)?.connections === perNode.get(node)) break;
        await sleep(100);
      }
    }
    expect([...perNode.values()]).toEqual([2, 2, 2]);
  }, 40_000);

  it('refuses to start a node with another partition count, and says why', async () => {
    const mesh = await startMesh(1);
    const odd = await mesh.spawn({ THRESHOLD_PARTITIONS: '32' });
    const { code } = await odd.process.exited;
    expect(code).toBe(1);
    expect(odd.process.output()).toMatch(/64 partitions/);
    expect(odd.process.output()).toMatch(/32/);
    expect(odd.process.output()).toMatch(/THRESHOLD_PARTITIONS/);
  }, 40_000);
});
