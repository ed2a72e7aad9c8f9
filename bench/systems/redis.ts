import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedRedis } from '../../src/redis/embedded.ts';
import { startEmbeddedRedisCluster } from '../../src/redis/embedded-cluster.ts';
import { killAtExit, pin } from '../lib/processes.ts';

/**
 * The Redis settings every system gets: a fresh `redis-server` on loopback, append-only file
 * with `appendfsync everysec` (Threshold's default durability), no RDB snapshots.
 */
export const REDIS_SETTINGS = 'redis-server, appendonly yes, appendfsync everysec, save ""';

/** Which Redis Threshold runs on: one server, or a Redis Cluster of three masters. */
export type RedisMode = 'standalone' | 'cluster';

/** Masters of the bench's Redis Cluster (no replicas: the same servers' work as standalone's). */
export const CLUSTER_MASTERS = 3;

export interface BenchRedis {
  /** One URL, or a Redis Cluster's seed list (comma-separated, masters first). */
  url: string;
  /** Every server's URL: one, or each master's. */
  urls: string[];
  /** Every server, named for CPU figures (`redis-server`, or `redis-server 1` … per master). */
  servers: { name: string; pid: number }[];
  stop(): Promise<void>;
}

/**
 * A fresh Redis for one system and workload, pinned with the servers: one `redis-server`, or
 * (`cluster`) a Redis Cluster of {@link CLUSTER_MASTERS} masters, each with the same settings.
 */
export async function startBenchRedis(mode: RedisMode = 'standalone'): Promise<BenchRedis> {
  const dir = await mkdtemp(join(tmpdir(), `threshold-bench-redis-${mode}-`));
  if (mode === 'cluster') {
    // Every server: appendonly yes, appendfsync everysec, save "" (embedded.ts), as standalone.
    const cluster = await startEmbeddedRedisCluster({
      dir,
      masters: CLUSTER_MASTERS,
      replicas: 0,
      appendFsync: 'everysec',
    });
    const servers = cluster.nodes.map((n, i) => ({
      name: `redis-server ${i + 1}`,
      pid: n.pid ?? 0,
    }));
    for (const s of servers) pin(s.pid, 'server');
    // Started detached: Ctrl-C on the bench does not reach them.
    const tracked = servers.map((s) => killAtExit(s.pid));
    return {
      url: cluster.url,
      urls: cluster.urls,
      servers,
      async stop() {
        await cluster.stop();
        for (const t of tracked) t.forget();
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  const redis = await startEmbeddedRedis({ dir, appendOnly: true, appendFsync: 'everysec' });
  pin(redis.pid, 'server');
  // Started detached: Ctrl-C on the bench does not reach it.
  const tracked = killAtExit(redis.pid ?? 0);
  return {
    url: redis.url,
    urls: [redis.url],
    servers: [{ name: 'redis-server', pid: redis.pid ?? 0 }],
    async stop() {
      await redis.stop();
      tracked.forget();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
