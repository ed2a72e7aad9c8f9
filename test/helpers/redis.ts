import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll, inject, onTestFinished } from 'vitest';
import { CLUSTER_OPTIONS } from '../../src/redis/client.ts';
import {
  type EmbeddedRedis,
  type EmbeddedRedisOptions,
  startEmbeddedRedis,
} from '../../src/redis/embedded.ts';

/** The Redis shared by the whole run (see test/global-setup.ts). */
export function redisUrl(): string {
  return inject('redisUrl');
}

/**
 * True on the Redis Cluster tier (`npm run test:redis-cluster`): the shared Redis is a
 * three-master cluster and {@link redisUrl} one of its nodes. Usable at collection time,
 * e.g. `it.skipIf(onRedisCluster())`.
 */
export function onRedisCluster(): boolean {
  return inject('redisTopology') === 'cluster';
}

/** `host:port` of the nodes of Redis Clusters other than the shared one (registerCluster). */
const privateClusterNodes = new Set<string>();

/** Makes {@link connect} answer a Cluster client for these nodes' URLs (a mesh's own cluster). */
export function registerCluster(urls: readonly string[]): void {
  for (const url of urls) privateClusterNodes.add(new URL(url).host);
}

function isClusterUrl(url: string): boolean {
  const host = new URL(url).host;
  return (onRedisCluster() && host === new URL(redisUrl()).host) || privateClusterNodes.has(host);
}

/**
 * A key prefix no other test uses, e.g. `t:commit-dedupe:1f3a9c0b:`, so tests can share
 * one Redis (even one a developer also uses) and run in parallel.
 */
export function uniquePrefix(name: string): string {
  const slug = name
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return `t:${slug || 'test'}:${randomBytes(4).toString('hex')}:`;
}

/**
 * A new client (to the shared Redis by default). The caller must `quit()` it.
 *
 * For a Redis Cluster (the shared Redis on the cluster tier, or a cluster given to
 * registerCluster) it is an ioredis `Cluster` seeded with `url`, typed `Redis` like the
 * relay's own code takes it: the commands tests send (one key, or keys of one slot: one
 * partition's, one room's) are the same on both. What is not (SCAN, KEYS, INFO, CONFIG,
 * a pipeline over several slots) needs {@link scanKeys} or a test of its own; any other
 * server, e.g. startPrivateRedis()'s, gets a plain client.
 */
export function connect(url: string = redisUrl(), options: RedisOptions = {}): Redis {
  if (!isClusterUrl(url)) return new Redis(url, { maxRetriesPerRequest: 3, ...options });
  const { hostname, port } = new URL(url);
  const cluster = new Cluster([{ host: hostname, port: Number(port) }], {
    ...CLUSTER_OPTIONS,
    redisOptions: { maxRetriesPerRequest: 3, ...options },
  });
  return cluster as unknown as Redis;
}

/**
 * A client for the enclosing file or `describe`, quit after its last test. Call it at the
 * top level of a file or a `describe`, not inside a test.
 */
export function useRedis(url?: string, options?: RedisOptions): Redis {
  const client = connect(url, options);
  afterAll(async () => {
    await client.quit().catch(() => client.disconnect());
  });
  return client;
}

/**
 * The servers that hold `client`'s keys: itself, or every master of a cluster (a key lives
 * on one of them; SCAN, KEYS and the like see only the server they are sent to).
 */
async function servers(client: Redis): Promise<Redis[]> {
  const c = client as Redis | Cluster;
  if (!(c instanceof Cluster)) return [c];
  // Until the cluster is ready its list of masters is empty: a command waits for it.
  if (c.status !== 'ready') await c.exists('threshold-test-ready');
  return c.nodes('master');
}

/** Every key matching `pattern` (a SCAN glob), from every master on a cluster. */
export async function scanKeys(client: Redis, pattern: string): Promise<string[]> {
  const found: string[] = [];
  for (const server of await servers(client)) {
    for await (const keys of server.scanStream({ match: pattern, count: 500 })) {
      found.push(...(keys as string[]));
    }
  }
  return found;
}

/** Deletes every key under `prefix` (made by {@link uniquePrefix}); returns how many. */
export async function deleteKeys(client: Redis, prefix: string): Promise<number> {
  let deleted = 0;
  for (const server of await servers(client)) {
    // uniquePrefix() yields no glob metacharacters, so the prefix can be used as is.
    for await (const keys of server.scanStream({ match: `${prefix}*`, count: 500 })) {
      const batch = keys as string[];
      if (batch.length === 0) continue;
      // One UNLINK of many keys is refused on a cluster unless they share a slot: one each.
      if (server === client) deleted += await server.unlink(...batch);
      else deleted += (await Promise.all(batch.map((k) => server.unlink(k)))).reduce(sum, 0);
    }
  }
  return deleted;
}

const sum = (a: number, b: number) => a + b;

export interface PrivateRedis extends EmbeddedRedis {
  /** Its data directory: pass it (and `port`) to startPrivateRedis() to restart it. */
  readonly dir: string;
}

/**
 * A Redis of the test's own, for tests that stop, kill or restart it; stopped when the test
 * finishes. Without `dir` it lives in a fresh temp dir, deleted afterwards. Call it inside
 * a test; for one server shared by a suite, use {@link usePrivateRedis}.
 */
export async function startPrivateRedis(
  options: Partial<EmbeddedRedisOptions> = {},
): Promise<PrivateRedis> {
  let instance: Awaited<ReturnType<typeof createPrivateRedis>> | undefined;
  try {
    onTestFinished(async () => {
      await instance?.cleanup();
    });
  } catch (err) {
    // A hook registered from a beforeAll would be silently ignored, leaking the server.
    throw new Error(
      'startPrivateRedis() must be called inside a test; use usePrivateRedis() at the ' +
        'top of a describe for a server shared by the suite',
      { cause: err },
    );
  }
  instance = await createPrivateRedis(options);
  return instance.server;
}

/**
 * Starts a private Redis before the enclosing file or `describe` and stops it after.
 * Call at collection time; the returned function gives the server inside tests.
 */
export function usePrivateRedis(options: Partial<EmbeddedRedisOptions> = {}): () => PrivateRedis {
  let instance: Awaited<ReturnType<typeof createPrivateRedis>> | undefined;
  beforeAll(async () => {
    instance = await createPrivateRedis(options);
  });
  afterAll(async () => {
    await instance?.cleanup();
  });
  return () => {
    if (!instance) throw new Error('usePrivateRedis(): the server starts in beforeAll');
    return instance.server;
  };
}

async function createPrivateRedis(
  options: Partial<EmbeddedRedisOptions>,
): Promise<{ server: PrivateRedis; cleanup: () => Promise<void> }> {
  const ownDir = options.dir === undefined;
  const dir = options.dir ?? (await mkdtemp(join(tmpdir(), 'threshold-private-redis-')));
  const removeDir = async (): Promise<void> => {
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  let started: EmbeddedRedis;
  try {
    started = await startEmbeddedRedis({ appendOnly: true, ...options, dir });
  } catch (err) {
    await removeDir();
    throw err;
  }
  return {
    server: { ...started, dir },
    cleanup: async () => {
      await started.stop();
      await removeDir();
    },
  };
}
