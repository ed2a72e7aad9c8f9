import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { RELAY_GROUP } from '../funnel/funnel.ts';
import type { Logger } from '../log.ts';
import type { Keys } from '../redis/keys.ts';
import {
  BlockingWait,
  claimAllPending,
  type FencedRead,
  FencedReader,
  type FencedReadRequest,
  type StreamEntry,
} from '../redis/streams.ts';

/** One funnel entry read by the owner of its partition. `data` is null if it was trimmed away. */
export interface FunnelEntry {
  partition: number;
  lease: string;
  id: string;
  data: string | null;
}

export interface BatchOutcome {
  /** Partitions with entries that must be tried again before anything newer (order). */
  retry: ReadonlySet<number>;
  /** Partitions whose lease turned out not to be ours: stop reading them now. */
  fenced: ReadonlySet<number>;
}

/** What the consumer hands its entries to: the commit path. */
export interface BatchProcessor {
  process(entries: FunnelEntry[]): Promise<BatchOutcome>;
}

export interface PartitionConsumerOptions {
  nodeId: string;
  /** Entries read per partition per round. */
  batch: number;
  /** How long one XREADGROUP waits for new entries. */
  blockMs: number;
}

interface Owned {
  lease: string;
  /** '0' re-reads our own pending entries (after a claim or a failure) before '>' reads new ones. */
  cursor: '0' | '>';
  /** Counts the times the cursor was set back to '0'. */
  rewinds: number;
}

/**
 * Reads the funnel partitions this node owns and feeds each batch to the processor. Reads
 * are fenced (lua/read-fenced-2.lua, one per partition in a pipeline); when every
 * partition is caught up it waits in one XREAD BLOCK over all of them, on a connection of
 * its own. One batch is in hand at a time, so each partition (and so each room) is
 * processed in stream order.
 */
export class PartitionConsumer {
  private readonly owned = new Map<number, Owned>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private batchDone: Promise<unknown> = Promise.resolve();
  private wake: (() => void) | undefined;
  /** The wait for new entries, on the reader's connection. */
  private readonly waiting: BlockingWait;
  private readonly fencedReader: FencedReader;
  /** Called when a fenced read or the commit script reports that a lease is no longer ours. */
  onFenced: (partition: number) => void = () => {};

  constructor(
    private readonly reader: Redis,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly processor: BatchProcessor,
    private readonly options: PartitionConsumerOptions,
    private readonly log: Logger,
  ) {
    this.waiting = new BlockingWait(reader, redis);
    this.fencedReader = new FencedReader(redis, RELAY_GROUP, options.nodeId);
  }

  get partitions(): number[] {
    return [...this.owned.keys()];
  }

  async start(): Promise<void> {
    this.running = true;
    this.loopDone = this.loop();
  }

  /**
   * Starts consuming a partition we just leased: its pending entries, whoever read them
   * last, become ours and are processed before anything new.
   */
  async add(partition: number, lease: string): Promise<void> {
    await claimAllPending(
      this.redis,
      this.keys.funnel(partition),
      RELAY_GROUP,
      this.options.nodeId,
    );
    this.owned.set(partition, { lease, cursor: '0', rewinds: 0 });
    this.interrupt();
  }

  /**
   * Safety net for entries stranded in another consumer's pending list. Reads are fenced
   * and a new owner claims every pending entry when it takes a partition, so this should
   * find nothing; it logs a warning when it does. Claims whatever has been pending longer
   * than `minIdleMs` and re-reads it.
   */
  async reclaimIdle(minIdleMs: number): Promise<void> {
    const partitions = this.partitions;
    if (partitions.length === 0) return;
    const pipe = this.redis.pipeline();
    for (const p of partitions) {
      // prettier-ignore
      pipe.xautoclaim(this.keys.funnel(p), RELAY_GROUP, this.options.nodeId, minIdleMs, '0-0', 'COUNT', 100, 'JUSTID');
    }
    const results = (await pipe.exec()) ?? [];
    partitions.forEach((p, i) => {
      const claimed = (results[i]?.[1] as [string, string[]] | undefined)?.[1] ?? [];
      const owned = this.owned.get(p);
      if (claimed.length > 0 && owned) {
        this.log.warn(
          { partition: p, entries: claimed.length },
          'reclaimed stranded funnel entries',
        );
        rewind(owned);
        this.interrupt();
      }
    });
  }

  /** Re-reads our own pending entries of every partition before anything new. */
  private rewind(): void {
    for (const o of this.owned.values()) rewind(o);
  }

  /** Stops reading a partition; resolves once the batch in hand (if any) is finished. */
  async remove(partition: number): Promise<void> {
    if (!this.owned.delete(partition)) return;
    this.interrupt();
    await this.batchDone;
  }

  async stop(): Promise<void> {
    this.running = false;
    this.interrupt();
    await this.loopDone;
  }

  /** Wakes the loop so it reads the new set of partitions now rather than after blockMs. */
  private interrupt(): void {
    this.wake?.();
    this.waiting.interrupt();
  }

  private fenced(partition: number, message: string): void {
    this.log.warn({ partition }, message);
    this.owned.delete(partition);
    this.onFenced(partition);
  }

  /** Blocks until any of the streams has an entry newer than the given id (or blockMs). */
  private async waitForEntries(newest: [stream: string, id: string][]): Promise<void> {
    try {
      await this.waiting.wait(newest, this.options.blockMs);
    } catch (err) {
      // A lost connection (an UNBLOCK ends the wait without an error): the next round reads again.
      this.log.debug({ err }, 'waiting for funnel entries failed');
      await sleep(100);
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      if (this.owned.size === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      // The cursors as sent, and their rewinds: one rewound while we read must stay '0'.
      const partitions = [...this.owned.entries()].map(
        ([p, o]) => [p, o, o.cursor, o.rewinds] as const,
      );
      const entries: FunnelEntry[] = [];
      const read = new Set<number>();
      const newest: [stream: string, id: string][] = [];
      try {
        const requests = partitions.map(([p, o, cursor]) => ({
          lease: this.keys.lease(p),
          stream: this.keys.funnel(p),
          value: o.lease,
          cursor,
        }));
        const replies = await this.fencedReader.read(requests, this.options.batch);
        failures = 0;
        // Partitions whose whole pending list came back with room to spare: new entries too.
        const topUps: (FencedReadRequest & { p: number; o: Owned })[] = [];
        const take = (p: number, o: Owned, reply: FencedRead): StreamEntry[] | undefined => {
          // Released while we were reading: leave the entries pending for the next owner.
          if (this.owned.get(p) !== o) return undefined;
          if (reply === 'fenced') {
            this.fenced(p, 'lease lost (fenced read); stopped reading the partition');
            return undefined;
          }
          const { entries: items, newest: last } = reply;
          if (items.length > 0) read.add(p);
          if (last) newest.push([this.keys.funnel(p), last]);
          for (const [id, fields] of items) {
            entries.push({
              partition: p,
              lease: o.lease,
              id,
              data: fields ? fieldValue(fields, 'e') : null,
            });
          }
          return items;
        };
        partitions.forEach(([p, o, cursor, rewinds], i) => {
          const items = take(p, o, replies[i] as FencedRead);
          if (!items || cursor !== '0') return;
          // Our pending list is exhausted once a read from '0' returns nothing.
          if (items.length === 0 && o.rewinds === rewinds) o.cursor = '>';
          else if (items.length > 0 && items.length < this.options.batch)
            topUps.push({
              ...requests[i]!,
              cursor: '>',
              count: this.options.batch - items.length,
              p,
              o,
            });
        });
        // Entries being retried (a poison message, a room waiting for its previous entry) must
        // not hold up the partition's other rooms: new entries join the batch after every
        // pending one, so a room's new entry still finds its pending predecessor (commit
        // script, ARGV[12]) and waits for it, while other rooms' entries commit.
        if (topUps.length > 0) {
          const more = await this.fencedReader.read(topUps, this.options.batch);
          topUps.forEach(({ p, o }, i) => take(p, o, more[i] as FencedRead));
        }
      } catch (err) {
        // The read may have happened with its reply lost: those entries are pending now.
        this.rewind();
        failures++;
        this.log.warn(
          { err, failures },
          'reading the funnel failed; retrying (is Redis reachable?)',
        );
        await sleep(Math.min(2000, 50 * 2 ** failures));
        continue;
      }

      if (entries.length === 0) {
        // Only wait when every partition is caught up; an XREAD takes nothing from the group.
        const catchingUp = [...this.owned.values()].some((o) => o.cursor === '0');
        if (!catchingUp && newest.length > 0) await this.waitForEntries(newest);
        continue;
      }

      const processing = this.processor.process(entries);
      this.batchDone = processing.catch(() => {});
      let outcome: BatchOutcome;
      try {
        outcome = await processing;
      } catch (err) {
        this.log.error(
          { err },
          'processing a funnel batch failed; its entries stay pending and are retried',
        );
        outcome = { retry: read, fenced: new Set() };
      }
      for (const p of outcome.fenced) {
        this.fenced(p, 'lease lost (fenced by the commit script); stopped reading the partition');
      }
      if (outcome.retry.size > 0) {
        for (const p of outcome.retry) {
          const o = this.owned.get(p);
          if (o) rewind(o);
        }
        await sleep(100);
      }
    }
  }
}

function rewind(o: Owned): void {
  o.cursor = '0';
  o.rewinds++;
}

function fieldValue(fields: string[], name: string): string | null {
  for (let i = 0; i + 1 < fields.length; i += 2)
    if (fields[i] === name) return fields[i + 1] ?? null;
  return null;
}
