import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../src/redis/keys.ts';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode } from '../helpers/node.ts';

interface Lease {
  partition: number;
  holder: string | null;
  leaseAgeMs: number | null;
  lag: number | null;
  pending: number | null;
}

describe('GET /v1/cluster leases', () => {
  it("gives every partition's lease holder, lease age and funnel lag", async () => {
    const node = await startTestNode({ name: 'cluster-leases' });
    const cluster = (await (await node.admin('GET', '/v1/cluster')).json()) as {
      node: string;
      leases: Lease[];
    };
    expect(cluster.leases).toHaveLength(node.config.partitions);
    for (const [p, lease] of cluster.leases.entries()) {
      expect(lease).toMatchObject({ partition: p, holder: cluster.node, lag: 0, pending: 0 });
      expect(lease.leaseAgeMs).toBeGreaterThanOrEqual(0);
      expect(lease.leaseAgeMs).toBeLessThanOrEqual(node.config.mesh.leaseTtlMs);
    }
    // A committed message is read: the partition's lag stays 0 once it is.
    await node.createRoom('lagless');
    const res = await node.admin('POST', '/v1/rooms/lagless/messages?wait=1', { body: 'hi' });
    expect(res.status).toBe(201);
    const p = partitionOf('lagless', node.config.partitions);
    await eventually(
      'lag 0 after the commit',
      async () =>
        ((await (await node.admin('GET', '/v1/cluster')).json()) as { leases: Lease[] }).leases[p],
      (l) => l?.lag === 0 && l.pending === 0,
    );
  });
});
