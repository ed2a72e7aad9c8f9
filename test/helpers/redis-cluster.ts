import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import {
  type EmbeddedRedisCluster,
  type EmbeddedRedisClusterNode,
  startEmbeddedRedisCluster,
} from '../../src/redis/embedded-cluster.ts';

export interface TestRedisCluster {
  /** One `redis://127.0.0.1:<port>` per master. */
  readonly urls: string[];
  readonly masters: EmbeddedRedisClusterNode[];
  /** `replicas` per master, in no particular order. */
  readonly replicas: EmbeddedRedisClusterNode[];
  /** Every server's URL, comma-separated: a seed list for THRESHOLD_REDIS_URL. */
  readonly url: string;
}

/**
 * A real Redis Cluster of `masters` masters with `replicas` replicas each
 * (src/redis/embedded-cluster.ts) in a fresh temp dir, on free loopback ports, stopped and
 * deleted when the test finishes. Call it inside a test.
 */
export async function startRedisCluster(masters = 3, replicas = 0): Promise<TestRedisCluster> {
  let cluster: EmbeddedRedisCluster | undefined;
  let dir: string | undefined;
  // Registered first: a hook from a beforeAll would be silently ignored, leaking the servers.
  onTestFinished(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  dir = await mkdtemp(join(tmpdir(), 'threshold-redis-cluster-'));
  cluster = await startEmbeddedRedisCluster({ dir, masters, replicas, nodeTimeoutMs: 2_000 });
  return {
    urls: cluster.urls.slice(0, masters),
    masters: cluster.nodes.slice(0, masters),
    replicas: cluster.nodes.slice(masters),
    url: cluster.url,
  };
}
