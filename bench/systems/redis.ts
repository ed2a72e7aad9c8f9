import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedRedis } from '../../src/redis/embedded.ts';
import { killAtExit, pin } from '../lib/processes.ts';

/**
 * The Redis settings every system gets: a fresh `redis-server` on loopback, append-only file
 * with `appendfsync everysec` (Threshold's default durability), no RDB snapshots.
 */
export const REDIS_SETTINGS = 'redis-server, appendonly yes, appendfsync everysec, save ""';

export interface BenchRedis {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** A fresh Redis for one system and workload, pinned with the servers. */
export async function startBenchRedis(): Promise<BenchRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'threshold-bench-redis-'));
  const redis = await startEmbeddedRedis({ dir, appendOnly: true, appendFsync: 'everysec' });
  pin(redis.pid, 'server');
  // Started detached: Ctrl-C on the bench does not reach it.
  const tracked = killAtExit(redis.pid ?? 0);
  return {
    url: redis.url,
    pid: redis.pid ?? 0,
    async stop() {
      await redis.stop();
      tracked.forget();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
