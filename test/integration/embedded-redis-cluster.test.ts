import { Cluster, Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  type EmbeddedRedisCluster,
  startEmbeddedRedisCluster,
} from '../../src/redis/embedded-cluster.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';
import { tempDir } from '../helpers/readme.ts';

async function ask(url: string, ...args: string[]): Promise<string> {
  const client = new Redis(url);
  try {
    return String(await client.call(args[0] as string, ...args.slice(1)));
  } finally {
    client.disconnect();
  }
}

describe('startEmbeddedRedisCluster', () => {
  it('restarts over its directory on the same ports, as the same cluster, with its data', async () => {
    const dir = await tempDir('embedded-cluster-restart');
    const running = new Set<EmbeddedRedisCluster>();
    onTestFinished(async () => {
      for (const c of running) await c.stop();
    });
    const first = await startEmbeddedRedisCluster({ dir, masters: 3, nodeTimeoutMs: 2_000 });
    running.add(first);
    expect(first.url).toBe(first.urls.join(','));
    const ids = await Promise.all(first.urls.map((u) => ask(u, 'CLUSTER', 'MYID')));
    const client = new Cluster([first.urls[0] as string]);
    await client.set('embedded-cluster:greeting', 'hello');
    client.disconnect();
    await first.stop();
    running.delete(first);

    const second = await startEmbeddedRedisCluster({ dir, masters: 3, nodeTimeoutMs: 2_000 });
    running.add(second);
    expect(new Set(second.urls)).toEqual(new Set(first.urls));
    for (const [i, url] of first.urls.entries()) {
      expect(await ask(url, 'CLUSTER', 'MYID')).toBe(ids[i]);
    }
    const again = new Cluster([second.urls[1] as string]);
    expect(await again.get('embedded-cluster:greeting')).toBe('hello');
    again.disconnect();
  });

  it('with replicas: masters first, each replica linked to a master', async () => {
    const cluster = await startRedisCluster(3, 1);
    expect(cluster.masters).toHaveLength(3);
    expect(cluster.replicas).toHaveLength(3);
    for (const m of cluster.masters)
      expect(await ask(m.url, 'INFO', 'replication')).toMatch(/^role:master/m);
    for (const r of cluster.replicas) {
      expect(await ask(r.url, 'INFO', 'replication')).toMatch(/^master_link_status:up/m);
    }
  });

  it('refuses a directory that holds a cluster of another shape', async () => {
    const dir = await tempDir('embedded-cluster-shape');
    const first = await startEmbeddedRedisCluster({ dir, masters: 4, nodeTimeoutMs: 2_000 });
    await first.stop();
    await expect(startEmbeddedRedisCluster({ dir, masters: 3 })).rejects.toMatchObject({
      code: 'redis_cluster_mismatch',
      message: expect.stringContaining('remove the directory'),
    });
  });
});
