import type { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { MemberSettingsStore } from '../../src/delivery/member-settings.ts';
import { Receipts } from '../../src/delivery/receipts.ts';
import { DeliveryPlanner } from '../../src/delivery/delivery-plan.ts';
import { SmsPlanner } from '../../src/delivery/sms-plan.ts';
import { RELAY_GROUP, prepareFunnel } from '../../src/funnel/funnel.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import type { FunnelEntry } from '../../src/mesh/batch.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { Committer } from '../../src/rooms/committer.ts';
import { RedisRoomsStore } from '../../src/rooms/store.ts';
import { serviceEnvelope } from '../helpers/envelope.ts';
import {
  connect,
  deleteKeys,
  redisUrl,
  startPrivateRedis,
  uniquePrefix,
  useRedis,
} from '../helpers/redis.ts';

const NODE = 'node-a';

/** A message to `room` put in its funnel (at `id`) and read by NODE, holding the lease. */
async function funnelEntry(
  redis: Redis,
  keys: Keys,
  room: string,
  body: string,
  id = '*',
): Promise<FunnelEntry> {
  const p = keys.partitionOf(room);
  const lease = (await redis.acquireLease(
    keys.lease(p),
    keys.leaseToken(p),
    NODE,
    60_000,
  )) as string;
  const data = JSON.stringify(serviceEnvelope(room, body));
  const entryId = (await redis.xadd(keys.funnel(p), id, 'e', data)) as string;
  await redis.xreadgroup('GROUP', RELAY_GROUP, NODE, 'STREAMS', keys.funnel(p), '>');
  return { partition: p, lease, id: entryId, data, fields: ['e', data] };
}

/** Phones are texted by the SMS channel; users get the live path. */
const SMS_ROUTES = new Map([['phone', 'sms']]);

describe('Committer', () => {
  const redis = defineScripts(useRedis());

  it('keeps an entry pending through a Redis out-of-memory spell and commits it afterwards', async () => {
    // A Redis of its own: the test fills it up.
    const server = await startPrivateRedis({ appendOnly: false });
    const redis = defineScripts(connect(server.url, { maxRetriesPerRequest: 1 }));
    try {
      const keys = new Keys('oom:', 4);
      await prepareFunnel(redis, keys);
      await new RedisRoomsStore(redis, keys).create({ id: 'pantry' });
      const entry = await funnelEntry(redis, keys, 'pantry', 'through the storm');
      const p = entry.partition;
      const metrics = new Metrics();
      const committer = new Committer(
        redis,
        keys,
        new Receipts(NODE, keys),
        metrics,
        { historyLength: 100, dedupeTtlMs: 60_000, maxAttempts: 2, deadLength: 100 },
        createLogger('silent'),
        new DeliveryPlanner(SMS_ROUTES, [
          new SmsPlanner(redis, keys, new MemberSettingsStore(redis, keys)),
        ]),
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

  it('counts the failed attempts of each partition’s entry apart, though their ids are the same', async () => {
    const redis = defineScripts(connect(redisUrl()));
    const prefix = uniquePrefix('committer same ids');
    try {
      const keys = new Keys(prefix, 4);
      await prepareFunnel(redis, keys);
      // Two rooms on different partitions whose commits always fail (a corrupted seq counter).
      const rooms = ['bad-a'];
      for (let i = 0; rooms.length < 2; i++)
        if (keys.partitionOf(`bad-b${i}`) !== keys.partitionOf('bad-a')) rooms.push(`bad-b${i}`);
      const store = new RedisRoomsStore(redis, keys);
      const entries: FunnelEntry[] = [];
      for (const room of rooms) {
        await store.create({ id: room });
        await redis.set(keys.seq(room), 'not-a-number');
        // Funnel streams written in the same millisecond hand out the same id.
        entries.push(await funnelEntry(redis, keys, room, 'poison', '1-1'));
      }
      const [a, b] = entries as [FunnelEntry, FunnelEntry];
      const committer = new Committer(
        redis,
        keys,
        new Receipts(NODE, keys),
        new Metrics(),
        { historyLength: 100, dedupeTtlMs: 60_000, maxAttempts: 3, deadLength: 100 },
        createLogger('silent'),
        new DeliveryPlanner(SMS_ROUTES, [
          new SmsPlanner(redis, keys, new MemberSettingsStore(redis, keys)),
        ]),
      );

      await committer.process([a]);
      await committer.process([a]);
      // b's first failure is its own first attempt, not a's third.
      await committer.process([b]);
      expect(await redis.xlen(keys.dead)).toBe(0);
      await committer.process([a]);
      expect(await redis.xlen(keys.dead)).toBe(1);
      await committer.process([b]);
      expect(await redis.xlen(keys.dead)).toBe(1);
      await committer.process([b]);
      expect(await redis.xlen(keys.dead)).toBe(2);
    } finally {
      await deleteKeys(redis, prefix);
      await redis.quit();
    }
  });

  it('texts the phone members of a room that got numbers after the planner saw it without', async () => {
    const keys = new Keys(uniquePrefix('committer-sms'), 4);
    onTestFinished(async () => {
      await deleteKeys(redis, keys.prefix);
    });
    await prepareFunnel(redis, keys);
    const rooms = new RedisRoomsStore(redis, keys);
    await rooms.create({ id: 'pantry' });
    const p = keys.partitionOf('pantry');
    const lease = (await redis.acquireLease(keys.lease(p), keys.leaseToken(p), NODE, 60_000))!;
    const committer = new Committer(
      redis,
      keys,
      new Receipts(NODE, keys),
      new Metrics(),
      { historyLength: 100, dedupeTtlMs: 60_000, maxAttempts: 2, deadLength: 100 },
      createLogger('silent'),
      new DeliveryPlanner(SMS_ROUTES, [
        new SmsPlanner(redis, keys, new MemberSettingsStore(redis, keys)),
      ]),
    );
    const read = async (body: string) => {
      const env = serviceEnvelope('pantry', body);
      const id = (await redis.xadd(keys.funnel(p), '*', 'e', JSON.stringify(env))) as string;
      await redis.xreadgroup('GROUP', RELAY_GROUP, NODE, 'STREAMS', keys.funnel(p), '>');
      return {
        partition: p,
        lease,
        id,
        data: JSON.stringify(env),
        fields: ['e', JSON.stringify(env)],
      };
    };

    expect((await committer.process([await read('before')])).retry.size).toBe(0);
    // Deleted and created again with a number, say: the planner remembers the room without.
    await redis.hset(keys.room('pantry'), 'numbers', JSON.stringify(['+15550001111']));
    await rooms.addMember('pantry', 'phone:+15550002222');
    const after = await read('after');
    expect((await committer.process([after])).retry.has(p)).toBe(true);
    expect(await redis.xlen(keys.outbox(p))).toBe(0);
    expect((await committer.process([after])).retry.size).toBe(0);
    const jobs = (await redis.xrange(keys.outbox(p), '-', '+')).map(([, f]) => f);
    expect(jobs).toHaveLength(1);
    expect(jobs[0]).toEqual(
      expect.arrayContaining(['to', 'phone:+15550002222', 'from', '+15550001111']),
    );
    expect(await redis.get(keys.seq('pantry'))).toBe('2');
  });
});
