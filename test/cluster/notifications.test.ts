import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { receiver } from '../helpers/http-receiver.ts';
import { admin, type MeshNode, sleep, startMesh } from '../helpers/mesh.ts';

/**
 * Scheduling that survives crashes: a notification waits in its partition's slot and is
 * dispatched by the partition's owner under its lease, so the node that accepted it may die
 * meanwhile; it fires on time, once, from whichever node holds the partition then.
 */
describe('notifications over a mesh', () => {
  it('fires within a second of sendAt although the node that accepted it was killed, and once', async () => {
    const mesh = await startMesh(2);
    const [a, b] = mesh.nodes as [MeshNode, MeshNode];
    await mesh.agreement();
    const arrived: number[] = [];
    const hook = await receiver(() => {
      arrived.push(Date.now());
      return 200;
    });
    expect((await admin(b, 'PUT', '/v1/webhooks/ops', { url: hook.url })).status).toBe(201);

    // Three, so that some are in partitions A held: all must fire, from B.
    const sendAt = Date.now() + 6000;
    const ids: string[] = [];
    for (const body of ['one', 'two', 'three']) {
      const res = await admin(a, 'POST', '/v1/notifications', {
        to: { members: ['webhook:ops'] },
        body,
        sendAt,
      });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    mesh.signal(a, 'SIGKILL');
    await eventually(
      'three arrivals',
      async () => arrived.length,
      (n) => n >= 3,
      15_000,
    );
    await sleep(2000);
    const bodies = hook.requests.map((r) => (JSON.parse(r.body) as { body: string }).body);
    expect(bodies.sort()).toEqual(['one', 'three', 'two']);
    const late = Math.max(...arrived.map((t) => t - sendAt));
    expect(Math.min(...arrived)).toBeGreaterThanOrEqual(sendAt);
    expect(late).toBeLessThan(1000);
    for (const id of ids) {
      const status = (await (await admin(b, 'GET', `/v1/notifications/${id}`)).json()) as {
        status: string;
        counts: { delivered: number };
      };
      expect(status).toMatchObject({ status: 'done', counts: { delivered: 1 } });
    }
    console.log(`[notifications] fired ${late} ms after sendAt at most, on the surviving node`);
  });
});
