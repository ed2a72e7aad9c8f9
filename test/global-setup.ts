/**
 * Provides one Redis to every test file as `inject('redisUrl')` (and to processes that
 * tests spawn as THRESHOLD_TEST_REDIS_URL). In order of preference: REDIS_URL, a
 * `redis-server` on PATH started here, a throwaway Docker container.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import { RedisNotInstalledError, startEmbeddedRedis } from '../src/redis/embedded.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

interface TestRedis {
  url: string;
  description: string;
  stop(): Promise<void>;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const redis = await provision();
  await ping(redis.url).catch(async (err: unknown) => {
    await redis.stop();
    throw new Error(
      `Redis for the tests (${redis.description}, ${redis.url}) does not answer PING`,
      { cause: err },
    );
  });
  console.info(`[threshold tests] Redis: ${redis.description} at ${redis.url}`);
  project.provide('redisUrl', redis.url);
  process.env.THRESHOLD_TEST_REDIS_URL = redis.url;
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
    await client.ping();
  } catch (err) {
    throw socketError ?? err;
  } finally {
    client.disconnect();
  }
}
