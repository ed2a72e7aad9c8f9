import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { startEmbeddedRedis } from '../../src/redis/embedded.ts';
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
  /**
   * Starts a server again (after a kill) on its port and directory, as its supervisor would:
   * its nodes.conf rejoins it to the cluster (a failed-over master as a replica). Stopped
   * when the test finishes.
   */
  restart(node: EmbeddedRedisClusterNode): Promise<EmbeddedRedisClusterNode>;
}

const NODE_TIMEOUT_MS = 2_000;

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
  cluster = await startEmbeddedRedisCluster({
    dir,
    masters,
    replicas,
    nodeTimeoutMs: NODE_TIMEOUT_MS,
  });
  const restarted: EmbeddedRedisClusterNode[] = [];
  // Registered after the cluster's: the restarted servers (replicas by then) stop first.
  onTestFinished(async () => {
    await Promise.all(restarted.map((n) => n.stop()));
  });
  return {
    urls: cluster.urls.slice(0, masters),
    masters: cluster.nodes.slice(0, masters),
    replicas: cluster.nodes.slice(masters),
    url: cluster.url,
    async restart(node) {
      // prettier-ignore
      const extraArgs = [
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--repl-diskless-sync-delay', '0',
      ];
      const server = await startEmbeddedRedis({ dir: node.dir, port: node.port, extraArgs });
      const again = { ...server, dir: node.dir };
      restarted.push(again);
      return again;
    },
  };
}
