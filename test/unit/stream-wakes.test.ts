import { EventEmitter } from 'node:events';
import type { Cluster } from 'ioredis';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RedisClient } from '../../src/redis/client.ts';
import { WakeWait, wakeChannel } from '../../src/redis/stream-wakes.ts';

/** The sharded subscriber of a cluster client, as WakeWait uses it; `failing` refuses SSUBSCRIBE. */
class FakeSubscriber extends EventEmitter {
  readonly subscribed = new Set<string>();
  failing = false;
  async ssubscribe(channel: string) {
    if (this.failing) throw new Error('Connection is closed.');
    this.subscribed.add(channel);
    return 1;
  }
  async sunsubscribe(channel: string) {
    this.subscribed.delete(channel);
    return 0;
  }
}

/** XREAD: nothing new anywhere. */
const commands = { xread: async () => null } as unknown as RedisClient;
const streams: [string, string][] = [
  ['a', '0-0'],
  ['b', '0-0'],
];

function setup() {
  const sub = new FakeSubscriber();
  return { sub, wait: new WakeWait(sub as unknown as Cluster, commands) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('WakeWait', () => {
  it('answers the streams announced on their wake channel', async () => {
    const { sub, wait } = setup();
    expect(await wait.poll(streams)).toEqual([]);
    expect([...sub.subscribed]).toEqual([wakeChannel('a'), wakeChannel('b')]);
    sub.emit('smessage', wakeChannel('b'), '');
    expect(await wait.poll(streams)).toEqual(['b']);
    expect(await wait.poll(streams)).toEqual([]);
  });

  it('answers every stream not answered for in a whole blockMs, announced or not: a wake-up lost in a failover cannot leave a stream unread while the others keep the consumer busy', async () => {
    vi.useFakeTimers();
    const { sub, wait } = setup();
    expect(await wait.poll(streams)).toEqual([]);
    // The consumer stays busy: it only polls, and only `a` is announced.
    for (let t = 0; t < 900; t += 100) {
      await vi.advanceTimersByTimeAsync(100);
      sub.emit('smessage', wakeChannel('a'), '');
      expect(await wait.poll(streams)).toEqual(['a']);
    }
    await vi.advanceTimersByTimeAsync(100);
    expect(await wait.poll(streams)).toEqual(['b']);
    expect(await wait.poll(streams)).toEqual([]);
  });

  it('subscribes again on the next poll when an SSUBSCRIBE failed (a failover under way)', async () => {
    const { sub, wait } = setup();
    sub.failing = true;
    await expect(wait.poll(streams)).rejects.toThrow('Connection is closed.');
    sub.failing = false;
    expect(await wait.poll(streams)).toEqual([]);
    expect([...sub.subscribed]).toEqual([wakeChannel('a'), wakeChannel('b')]);
  });
});
