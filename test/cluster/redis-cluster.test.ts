import { Cluster, Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startNode } from '../../src/node.ts';
import { Keys } from '../../src/redis/keys.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';

describe('Redis Cluster', () => {
  it("a test cluster of three masters: the partitions' hash tags spread rooms over all three", async () => {
    const cluster = await startRedisCluster(3);
    const client = new Cluster(
      cluster.urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })),
    );
    try {
      const keys = new Keys('spread:', 64);
      for (let i = 0; i < 300; i++) await client.hset(keys.room(`room-${i}`), 'name', `room ${i}`);
      const sizes: number[] = [];
      for (const url of cluster.urls) {
        const master = new Redis(url);
        sizes.push(await master.dbsize());
        master.disconnect();
      }
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(300);
      expect(Math.min(...sizes)).toBeGreaterThan(0);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(3 * Math.min(...sizes));
    } finally {
      client.disconnect();
    }
  });

  it('a node pointed at a cluster node refuses to start, saying why (cluster mode is not built yet)', async () => {
    const cluster = await startRedisCluster(3);
    const config = loadConfig({
      env: {},
      overrides: { redisUrl: cluster.urls[0], port: 0, logLevel: 'silent' },
    });
    await expect(startNode(config)).rejects.toThrow(/is a node of a Redis Cluster/);
  });
});
