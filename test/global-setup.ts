/**
 * Provides one Redis to every test file as `inject('redisUrl')` (and to processes that
 * tests spawn as THRESHOLD_TEST_REDIS_URL). In order of preference: REDIS_URL, a
 * `redis-server` on PATH started here, a throwaway Docker container.
 *
 * With THRESHOLD_TEST_REDIS=cluster (`npm run test:redis-cluster`) that Redis is a Redis
 * Cluster instead: REDIS_URL (a node of a running cluster), else three masters started here
 * from `redis-server` and `redis-cli`. `redisUrl` is then the first master's URL and
 * `inject('redisTopology')` (THRESHOLD_TEST_REDIS_TOPOLOGY) says 'cluster'.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import {
  type EmbeddedRedis,
  RedisNotInstalledError,
  startEmbeddedRedis,
} from '../src/redis/embedded.ts';

export type RedisTopology = 'standalone' | 'cluster';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisTopology: RedisTopology;
  }
}

interface TestRedis {
  url: string;
  description: string;
  stop(): Promise<void>;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const topology: RedisTopology =
    process.env.THRESHOLD_TEST_REDIS === 'cluster' ? 'cluster' : 'standalone';
  const redis = topology === 'cluster' ? await provisionCluster() : await provision();
  await ping(redis.url).catch(async (err: unknown) => {
    await redis.stop();
    throw new Error(
      `Redis for the tests (${redis.description}, ${redis.url}) does not answer PING`,
      { cause: err },
    );
  });
  console.info(`[threshold tests] Redis (${topology}): ${redis.description} at ${redis.url}`);
  project.provide('redisUrl', redis.url);
  project.provide('redisTopology', topology);
  process.env.THRESHOLD_TEST_REDIS_URL = redis.url;
  process.env.THRESHOLD_TEST_REDIS_TOPOLOGY = topology;
  return () => redis.stop();
}

async function provision(): Promise<TestRedis> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) return { url: fromEnv, description: 'REDIS_URL', stop: async () => {} };

  let notInstalled: RedisNotInstalledError;
  try {
    return await startLocal();
  } catch (err) {
    if (!(err instanceof RedisNotInstalledError)) throw err;
    notInstalled = err;
  }
  try {
    return await startContainer();
  } catch (err) {
    throw new Error(
      [
        'No Redis for the tests. Do one of:',
        '  - set REDIS_URL to a running server (e.g. REDIS_URL=redis://127.0.0.1:6379)',
        '  - install redis-server (`apt-get install redis-server`, `brew install redis`)',
        '  - start a Docker engine (testcontainers runs redis:7-alpine)',
        `Local: no "redis-server" on PATH (${String(notInstalled.cause)})`,
        `Docker: ${err instanceof Error ? err.message : String(err)}`,
      ].join('\n'),
      { cause: err },
    );
  }
}

async function provisionCluster(): Promise<TestRedis> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) {
    const info = await onNode(fromEnv, (c) => c.info('cluster'));
    if (!/cluster_enabled:1/.test(info))
      throw new Error(`THRESHOLD_TEST_REDIS=cluster, but REDIS_URL ${fromEnv} is no cluster node`);
    return { url: fromEnv, description: 'REDIS_URL (a cluster node)', stop: async () => {} };
  }
  return startLocalCluster(3);
}

/**
 * `masters` cluster-enabled redis-servers on free loopback ports, joined by
 * `redis-cli --cluster create`. To be replaced by the shared helper in src/redis.
 */
async function startLocalCluster(masters: number): Promise<TestRedis> {
  const dirs: string[] = [];
  const servers: EmbeddedRedis[] = [];
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  };
  try {
    for (let i = 0; i < masters; i++) {
      const dir = await mkdtemp(join(tmpdir(), 'threshold-test-redis-cluster-'));
      dirs.push(dir);
      // prettier-ignore
      servers.push(await startEmbeddedRedis({ dir, appendOnly: false, extraArgs: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'] }));
    }
    const hosts = servers.map((s) => new URL(s.url).host);
    // prettier-ignore
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...hosts, '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 });
    const deadline = Date.now() + 15_000;
    for (const server of servers) {
      while (!/cluster_state:ok/.test(await onNode(server.url, (c) => c.cluster('INFO')))) {
        if (Date.now() > deadline) throw new Error(`cluster node ${server.url} not ok in time`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: servers[0]!.url,
    description: `${masters} masters (pids ${servers.map((s) => s.pid).join(', ')})`,
    stop,
  };
}

async function startLocal(): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'threshold-test-redis-'));
  try {
    const server = await startEmbeddedRedis({ dir, appendOnly: true });
    return {
      url: server.url,
      description: `redis-server pid ${server.pid}`,
      stop: async () => {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startContainer(): Promise<TestRedis> {
  // Imported only when needed: most runs never touch Docker.
  const { GenericContainer, Wait } = await import('testcontainers');
  const container = await new GenericContainer('redis:7-alpine')
    .withCommand(['redis-server', '--appendonly', 'yes', '--save', ''])
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
    .start();
  return {
    url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
    description: `container ${container.getId().slice(0, 12)} (redis:7-alpine)`,
    stop: async () => {
      await container.stop();
    },
  };
}

async function ping(url: string): Promise<void> {
  await onNode(url, (c) => c.ping());
}

/** Runs `work` on a plain connection to the one server at `url` (a cluster node too). */
async function onNode<T>(url: string, work: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5_000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  // ioredis reports the socket error as an event and rejects with "Connection is closed".
  let socketError: Error | undefined;
  client.on('error', (err: Error) => {
    socketError = err;
  });
  try {
    await client.connect();
    return await work(client);
  } catch (err) {
    throw socketError ?? err;
  } finally {
    client.disconnect();
  }
}
