/**
 * The relay's cluster clients across a failover of a real Redis Cluster (3 masters with a
 * replica each): what must move to the promoted replica by itself. The whole relay under
 * load through the same fault is chaos scenario 8.
 */
import { Cluster } from 'ioredis';
import { expect, it } from 'vitest';
import { CLUSTER_OPTIONS } from '../../src/redis/client.ts';
import { wakeChannel } from '../../src/redis/stream-wakes.ts';
import { Keys } from '../../src/redis/keys.ts';
import { eventually } from '../helpers/eventually.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';

it('after a master fails over, every wake-up channel (sharded pub/sub) is subscribed on the promoted replica', async () => {
  const cluster = await startRedisCluster(3, 1);
  const seeds = [{ host: '127.0.0.1', port: Number(new URL(cluster.urls[1]!).port) }];
  // As RedisConnections builds them: the wake-ups' subscriber, and a commands client.
  const subscriber = new Cluster(seeds, {
    ...CLUSTER_OPTIONS,
    shardedSubscribers: true,
    redisOptions: { maxRetriesPerRequest: null },
  });
  const commands = new Cluster(seeds, {
    ...CLUSTER_OPTIONS,
    redisOptions: { maxRetriesPerRequest: 2 },
  });
  for (const c of [subscriber, commands]) c.on('error', () => {});
  try {
    const keys = new Keys('thr:', 64);
    const channels = Array.from({ length: keys.partitions }, (_, p) => wakeChannel(keys.funnel(p)));
    const heard = new Set<string>();
    subscriber.on('smessage', (channel: string) => heard.add(channel));
    // All at once, as WakeWait follows a node's partitions: auto-pipelined, only the first of
    // each batch would be subscribed again after a failover (see CLUSTER_OPTIONS).
    await Promise.all(channels.map((c) => subscriber.ssubscribe(c)));
    const deaf = async () => {
      heard.clear();
      await Promise.all(channels.map((c) => commands.spublish(c, '').catch(() => 0)));
      await new Promise((r) => setTimeout(r, 200));
      return channels.filter((c) => !heard.has(c));
    };
    expect(await deaf()).toEqual([]);

    await cluster.masters[0]!.kill();
    await eventually('every channel heard again', deaf, (missing) => missing.length === 0, 15_000);
  } finally {
    subscriber.disconnect();
    commands.disconnect();
  }
}, 30_000);
