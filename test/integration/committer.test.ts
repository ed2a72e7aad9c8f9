import { describe, expect, it } from 'vitest';
import { Receipts } from '../../src/delivery/receipts.ts';
import { RELAY_GROUP, prepareFunnel } from '../../src/funnel/funnel.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { Committer } from '../../src/rooms/committer.ts';
import { RedisRoomsStore } from '../../src/rooms/store.ts';
import { serviceEnvelope } from '../helpers/envelope.ts';
import { connect, startPrivateRedis } from '../helpers/redis.ts';

const NODE = 'node-a';

describe('Committer', () => {
  it('keeps an entry pending through a Redis out-of-memory spell and commits it afterwards', async () => {
    // A Redis of its own: the test fills it up.
    const server = await startPrivateRedis({ appendOnly: false });
    const redis = defineScripts(connect(server.url, { maxRetriesPerRequest: 1 }));
    try {
      const keys = new Keys('oom:', 4);
      await prepareFunnel(redis, keys);
      await new RedisRoomsStore(redis, keys).create({ id: 'pantry' });
      const p = keys.partitionOf('pantry');
      const lease = (await redis.acquireLease(
        keys.lease(p),
        keys.leaseToken(p),
        NODE,
        60_000,
      )) as string;
      const env = serviceEnvelope('pantry', 'through the storm');
      const entryId = (await redis.xadd(keys.funnel(p), '*', 'e', JSON.stringify(env))) as string;
      await redis.xreadgroup('GROUP', RELAY_GROUP, NODE, 'STREAMS', keys.funnel(p), '>');
      const entry = { partition: p, lease, id: entryId, data: JSON.stringify(env) };
      const metrics = new Metrics();
      const committer = new Committer(
        redis,
        keys,
        new Receipts(NODE, keys),
        metrics,
        { historyLength: 100, dedupeTtlMs: 60_000, maxAttempts: 2, deadLength: 100 },
        createLogger('silent'),
      );

      await redis.config('SET', 'maxmemory-policy', 'noeviction');
      await redis.config('SET', 'maxmemory', '1');
      // Many more rounds than maxAttempts: out of memory is not the message's fault.
      for (let round = 0; round < 5; round++) {
        const outcome = await committer.process([entry]);
        expect(outcome.retry.has(p)).toBe(true);
      }
      await redis.config('SET', 'maxmemory', '0');
      expect(await redis.xlen(keys.dead)).toBe(0);
      expect(((await redis.xpending(keys.funnel(p), RELAY_GROUP)) as [number])[0]).toBe(1);
      expect(await redis.get(keys.seq('pantry'))).toBeNull();

      const outcome = await committer.process([entry]);
      expect(outcome.retry.size).toBe(0);
      expect(await redis.get(keys.seq('pantry'))).toBe('1');
      expect(((await redis.xpending(keys.funnel(p), RELAY_GROUP)) as [number])[0]).toBe(0);
    } finally {
      await redis.config('SET', 'maxmemory', '0').catch(() => {});
      await redis.quit();
    }
  });
});
