import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { type PrivateRedis, startPrivateRedis } from './redis.ts';

const run = promisify(execFile);

export interface TestRedisCluster {
  /** One `redis://127.0.0.1:<port>` per master. */
  readonly urls: string[];
  readonly masters: PrivateRedis[];
}

/**
 * A real Redis Cluster of `masters` masters (no replicas) from the same `redis-server` and
 * `redis-cli` binaries as the other tests, on free loopback ports, stopped when the test
 * finishes: `--cluster-enabled yes` on each, then `redis-cli --cluster create`, then wait
 * until every node says `cluster_state:ok`.
 */
export async function startRedisCluster(masters = 3): Promise<TestRedisCluster> {
  const servers = await Promise.all(
    Array.from({ length: masters }, () =>
      startPrivateRedis({
        appendOnly: false,
        // prettier-ignore
        extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'],
      }),
    ),
  );
  const hosts = servers.map((s) => new URL(s.url).host);
  // prettier-ignore
  await run('redis-cli', ['--cluster', 'create', ...hosts, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
  const deadline = Date.now() + 15_000;
  for (const server of servers) {
    const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      while (!/cluster_state:ok/.test(String(await client.call('CLUSTER', 'INFO')))) {
        if (Date.now() > deadline)
          throw new Error(`Redis Cluster node ${server.url} not ok in time`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      client.disconnect();
    }
  }
  return { urls: servers.map((s) => s.url), masters: servers };
}
