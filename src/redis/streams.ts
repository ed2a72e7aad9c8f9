import type { Redis } from 'ioredis';
import { batch, isCluster, type RedisClient } from './client.ts';
import { Code } from './codes.ts';

/** A stream entry as XREADGROUP returns it (`null` fields: a pending entry trimmed away). */
export type StreamEntry = [id: string, fields: string[] | null];

/** One fenced read's answer: the lease is not ours, or the entries and the stream's newest id. */
export type FencedRead = 'fenced' | { entries: StreamEntry[]; newest: string };

/** What to read: a partition's stream, fenced by its lease. */
export interface FencedReadRequest {
  lease: string;
  stream: string;
  /** Our lease value. */
  value: string;
  /** '>' (new entries), or an id: our pending entries after it ('0' for all). */
  cursor: string;
  /** Entries to read at most, if fewer than the read's count. */
  count?: number;
}

/**
 * Fenced reads of a consumer group (lua/read-fenced-2.lua): entries move into our pending
 * list only while the partition's lease holds our value, so a paused or partitioned former
 * owner takes nothing the new owner would miss. One script per stream, in one pipeline.
 */
export class FencedReader {
  private epoch = 0;

  constructor(
    /** The commands connection: a lease release sent later on it runs after the read. */
    private readonly redis: RedisClient,
    private readonly group: string,
    private readonly consumer: string,
  ) {
    // ioredis sends unanswered commands again after it reconnects: a reply that arrives
    // across a reconnect may answer the second run of a read whose first run took entries
    // too, which only a re-read from '0' finds. Such a read is thrown away.
    const dropped = () => {
      this.epoch++;
    };
    // A cluster client has a connection per master (and resends to the new one on failover).
    if (isCluster(redis)) {
      for (const node of redis.nodes()) node.on('close', dropped);
      redis.on('+node', (node: Redis) => node.on('close', dropped));
    } else redis.on('close', dropped);
  }

  /** Throws if a reply fails or the connection dropped meanwhile: read our pending entries again. */
  async read(reads: readonly FencedReadRequest[], count: number): Promise<FencedRead[]> {
    const pipe = batch(this.redis);
    for (const r of reads) {
      // prettier-ignore
      pipe.readFenced(r.lease, r.stream, r.value, this.group, this.consumer, Math.min(count, r.count ?? count), r.cursor);
    }
    const epoch = this.epoch;
    const results = (await pipe.exec()) ?? [];
    if (this.epoch !== epoch)
      throw new Error('the connection to Redis dropped during the read; reading again');
    return reads.map((_, i) => {
      const [err, reply] = results[i] ?? [new Error('no reply')];
      if (err) throw err;
      if (reply === Code.FENCED) return 'fenced';
      const [entries, newest] = reply as [StreamEntry[], string];
      return { entries, newest };
    });
  }
}

/**
 * Makes every pending entry of `group` on `stream` ours, whoever read it last and however
 * recently ([XAUTOCLAIM](https://redis.io/docs/latest/commands/xautoclaim/), min-idle 0): a
 * new owner of a partition takes over what the former one read and did not finish.
 */
export async function claimAllPending(
  redis: RedisClient,
  stream: string,
  group: string,
  consumer: string,
): Promise<void> {
  let cursor = '0-0';
  do {
    // prettier-ignore
    const reply = (await redis.xautoclaim(
      stream, group, consumer, 0, cursor, 'COUNT', 1000, 'JUSTID',
    )) as [string, ...unknown[]];
    cursor = reply[0];
  } while (cursor !== '0-0');
}

/**
 * A wait for new stream entries ([XREAD BLOCK](https://redis.io/docs/latest/commands/xread/))
 * on a connection of its own, which another connection can end early
 * ([CLIENT UNBLOCK](https://redis.io/docs/latest/commands/client-unblock/)): a reader that
 * waits over the partitions it owns wakes at once when that set changes or it stops.
 */
export class BlockingWait {
  /** The reader's connection id (a reconnect gives a new one: looked up again before a wait). */
  private id: number | undefined;
  private blocked = false;

  constructor(
    private readonly reader: RedisClient,
    /** Any other connection: it sends the UNBLOCK. */
    private readonly commands: RedisClient,
  ) {
    reader.on('ready', () => {
      this.id = undefined;
    });
  }

  /**
   * Resolves once a stream has an entry newer than the id given with it, `blockMs` passed, or
   * interrupt(): with the streams that have such entries (none after a timeout or interrupt).
   * COUNT 1: the wait only tells which streams to read, the entries are read elsewhere.
   */
  async wait(streams: readonly [stream: string, id: string][], blockMs: number): Promise<string[]> {
    this.id ??= Number(await this.reader.client('ID'));
    this.blocked = true;
    try {
      return await this.newer(streams, ['BLOCK', blockMs]);
    } finally {
      this.blocked = false;
    }
  }

  /** The streams that have an entry newer than the id given with it now, without waiting. */
  poll(streams: readonly [stream: string, id: string][]): Promise<string[]> {
    return this.newer(streams, []);
  }

  private async newer(
    streams: readonly [stream: string, id: string][],
    block: (string | number)[],
  ): Promise<string[]> {
    // prettier-ignore
    const reply = (await this.reader.call(
      'XREAD', 'COUNT', 1, ...block, 'STREAMS', ...streams.map(([s]) => s), ...streams.map(([, id]) => id),
    )) as [stream: string, entries: unknown][] | null;
    return reply?.map(([stream]) => stream) ?? [];
  }

  /** Ends the wait in progress, if any, now. */
  interrupt(): void {
    if (this.blocked && this.id !== undefined)
      this.commands.client('UNBLOCK', this.id).catch(() => {});
  }
}
