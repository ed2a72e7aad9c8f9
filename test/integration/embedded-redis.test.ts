import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { RedisNotInstalledError, startEmbeddedRedis } from '../../src/redis/embedded.ts';
import { connect, startPrivateRedis, uniquePrefix } from '../helpers/redis.ts';

async function setKey(url: string, key: string, value: string): Promise<void> {
  const client = connect(url);
  try {
    await client.set(key, value);
  } finally {
    await client.quit();
  }
}

async function getKey(url: string, key: string): Promise<string | null> {
  const client = connect(url);
  try {
    return await client.get(key);
  } finally {
    await client.quit();
  }
}

describe('startEmbeddedRedis', () => {
  it('keeps data across a stop and restart on the same port and dir', async () => {
    const key = `${uniquePrefix('embedded-aof-restart')}greeting`;
    const first = await startPrivateRedis({ appendOnly: true });
    expect(first.url).toBe(`redis://127.0.0.1:${first.port}`);
    expect(first.pid).toBeTypeOf('number');
    await setKey(first.url, key, 'hello');
    await first.stop();

    const second = await startPrivateRedis({ dir: first.dir, port: first.port });
    expect(second.url).toBe(first.url);
    expect(second.pid).not.toBe(first.pid);
    expect(await getKey(second.url, key)).toBe('hello');
  });

  it('keeps acknowledged writes across a SIGKILL with appendfsync always', async () => {
    const key = `${uniquePrefix('embedded-aof-kill')}greeting`;
    const first = await startPrivateRedis({ appendOnly: true, appendFsync: 'always' });
    await setKey(first.url, key, 'still here');
    await first.kill();

    const second = await startPrivateRedis({ dir: first.dir, port: first.port });
    expect(await getKey(second.url, key)).toBe('still here');
  });

  it('rejects with RedisNotInstalledError when the binary is missing', async () => {
    const attempt = startPrivateRedis({ binary: 'redis-server-does-not-exist' });
    await expect(attempt).rejects.toBeInstanceOf(RedisNotInstalledError);
    await expect(attempt).rejects.toMatchObject({
      name: 'RedisNotInstalledError',
      code: 'redis_not_installed',
      message: expect.stringContaining('THRESHOLD_REDIS_URL'),
      cause: expect.objectContaining({ code: 'ENOENT' }),
    });
  });

  it('rejects with the server log when the port is taken', async () => {
    const holder = await startPrivateRedis();
    // Another data dir: the same dir would stop the holder as an orphan of an earlier life.
    const attempt = startEmbeddedRedis({ dir: join(holder.dir, 'other'), port: holder.port });
    await expect(attempt).rejects.toMatchObject({
      name: 'EmbeddedRedisStartError',
      message: expect.stringContaining('Address already in use'),
    });
  });
});
