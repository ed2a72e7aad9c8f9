import type { Cluster } from 'ioredis';
import type { RedisClient } from './client.ts';

/**
 * The sharded pub/sub channel that announces new entries of a stream on a Redis Cluster:
 * the stream's name and `:wake`, so it hashes to the stream's slot and a script that adds
 * to the stream may SPUBLISH to it (publish-envelope, commit-batch, promote-retries).
 */
export function wakeChannel(stream: string): string {
  return `${stream}${WAKE}`;
}

const WAKE = ':wake';

/**
 * Waits for new entries of streams on a Redis Cluster, where one XREAD over streams of
 * different slots is refused (CROSSSLOT) and a blocking connection per stream would be one
 * per partition. Writers SPUBLISH to each stream's {@link wakeChannel}; this follows the
 * channels of the streams it is asked about (SSUBSCRIBE, on the subscriber's connection to
 * each master) and remembers which were announced until asked about them. Same answers as
 * BlockingWait: the streams with something new, or none after the timeout or interrupt().
 */
export class WakeWait {
  /**
   * Streams followed: whether each was announced since we last answered for it, and when we
   * last did.
   */
  private readonly followed = new Map<string, { announced: boolean; reportedAt: number }>();
  private wake: (() => void) | undefined;
  /** The longest a followed stream goes unreported: the blockMs of the last wait. */
  private safetyNetMs = 1_000;

  constructor(
    /** A cluster client with `shardedSubscribers`, for SSUBSCRIBE only (shared by waits). */
    private readonly subscriber: Cluster,
    private readonly commands: RedisClient,
  ) {
    subscriber.on('smessage', (channel: string) => {
      const followed = this.followed.get(channel.slice(0, -WAKE.length));
      if (!followed) return;
      followed.announced = true;
      this.wake?.();
    });
  }

  async wait(streams: readonly [stream: string, id: string][], blockMs: number): Promise<string[]> {
    this.safetyNetMs = blockMs;
    const now = await this.poll(streams);
    if (now.length > 0) return now;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.interrupt(), blockMs);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
    });
    return this.announced(streams);
  }

  /**
   * The streams announced since we last answered for them. Streams not followed yet are
   * followed now, then read once (XREAD, after the SSUBSCRIBE): what was added before we
   * listened was never announced to us.
   */
  async poll(streams: readonly [stream: string, id: string][]): Promise<string[]> {
    const wanted = new Set(streams.map(([s]) => s));
    const gone = [...this.followed.keys()].filter((s) => !wanted.has(s));
    const added = streams.filter(([s]) => !this.followed.has(s));
    const now = Date.now();
    for (const s of gone) this.followed.delete(s);
    for (const [s] of added) this.followed.set(s, { announced: false, reportedAt: now });
    // One channel per call: ioredis refuses channels of several slots in one (CROSSSLOT).
    // A channel left subscribed costs an ignored message now and then, no more.
    await Promise.all(gone.map((s) => this.subscriber.sunsubscribe(wakeChannel(s)).catch(() => 0)));
    if (added.length > 0) {
      try {
        await Promise.all(added.map(([s]) => this.subscriber.ssubscribe(wakeChannel(s))));
      } catch (err) {
        // Not followed after all (a failover under way): the next poll subscribes again.
        for (const [s] of added) this.followed.delete(s);
        throw err;
      }
      const replies = await Promise.all(
        added.map(([s, id]) => this.commands.xread('COUNT', 1, 'STREAMS', s, id)),
      );
      added.forEach(([s], i) => {
        const followed = this.followed.get(s);
        if (replies[i] && followed) followed.announced = true;
      });
    }
    return this.announced(streams);
  }

  /**
   * The streams announced since we last answered for them, and, as a safety net, those we
   * have not answered for in a whole safetyNetMs: a wake-up lost in a failover (published
   * to a master we no longer listened to) would otherwise leave its stream unread for as
   * long as the others keep the consumer busy, for its wait then never times out.
   */
  private announced(streams: readonly [stream: string, id: string][]): string[] {
    const woke: string[] = [];
    const now = Date.now();
    for (const [s] of streams) {
      const followed = this.followed.get(s);
      if (followed && (followed.announced || now - followed.reportedAt >= this.safetyNetMs)) {
        woke.push(s);
        followed.announced = false;
        followed.reportedAt = now;
      }
    }
    return woke;
  }

  /** Ends the wait in progress, if any, now. */
  interrupt(): void {
    this.wake?.();
  }
}
