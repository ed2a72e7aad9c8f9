import { setTimeout as sleep } from 'node:timers/promises';
import { batch, type RedisClient } from '../redis/client.ts';
import type { Logger } from '../log.ts';
import type { Keys } from '../redis/keys.ts';
import {
  claimAllPending,
  type FencedRead,
  FencedReader,
  type FencedReadRequest,
  type StreamEntry,
} from '../redis/streams.ts';
import type { BatchOutcome, BatchProcessor, FunnelEntry } from './batch.ts';

export interface PartitionConsumerOptions {
  nodeId: string;
  /** The stream of a partition it reads (the funnel, the outbox). */
  stream: (partition: number) => string;
  /** Its consumer group on every such stream. */
  group: string;
  /** Re-read our own pending entries this often (0: only after failures and claims). */
  rescanMs?: number;
  /** Entries read per partition per round. */
  batch: number;
  /** How long one XREADGROUP waits for new entries. */
  blockMs: number;
}

/**
 * Tells which streams have entries newer than the ids given (redis/streams.ts BlockingWait:
 * XREAD BLOCK; redis/stream-wakes.ts WakeWait: sharded pub/sub on a Redis Cluster).
 */
export interface StreamWait {
  /** Waits up to blockMs (or until interrupt()) for one; none after a timeout or interrupt. */
  wait(streams: readonly [stream: string, id: string][], blockMs: number): Promise<string[]>;
  /** Without waiting. */
  poll(streams: readonly [stream: string, id: string][]): Promise<string[]>;
  interrupt(): void;
}

interface Owned {
  lease: string;
  /**
   * An entry id walks our own pending entries after it (from '0' after a claim or a failure)
   * before '>' reads new ones. Entries still in hand (an outbox job in flight) stay pending,
   * so the walk moves on past them rather than reading them again.
   */
  cursor: string;
  /** Counts the times the cursor was set back to '0'. */
  rewinds: number;
  /**
   * To be read in the next round: the wait saw new entries, or the last read filled its batch
   * (more may be waiting). A partition on cursor '0' is read every round regardless.
   */
  due: boolean;
  /** The newest id we know the stream to hold, all of it read: the wait wakes on anything newer. */
  newest: string;
  /** After a retry, not read before this time (ms): one room's poison stalls no other room. */
  pausedUntil: number;
}

/** How long a partition waits after its batch handed entries back for a retry. */
const RETRY_PAUSE_MS = 100;

/**
 * Reads a stream of every partition this node owns (the funnel, the outbox: one reader of
 * "the partitions I hold", two instances) and feeds each batch to the processor. Reads
 * are fenced (lua/read-fenced-2.lua, one per partition in a pipeline), and only of the
 * partitions that have something to read: those re-reading their pending entries, those
 * whose last read filled its batch, and those the wait saw new entries on. When none has,
 * it waits in one XREAD BLOCK over all of them (on a connection of its own; on a Redis
 * Cluster, for a sharded pub/sub wake-up: see StreamWait), whose reply names the streams with
 * new entries; after a busy round that wait returns at once (reading every owned partition
 * every round made idle ones most of Redis's work under load). A wait that times out reads
 * every partition once, as a safety net. One batch is in hand at a time, so each partition
 * (and so each room) is processed in stream order; a partition whose entries were handed back
 * for a retry pauses (RETRY_PAUSE_MS) while the others go on.
 */
export class PartitionConsumer {
  private readonly owned = new Map<number, Owned>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private batchDone: Promise<unknown> = Promise.resolve();
  private wake: (() => void) | undefined;
  private readonly fencedReader: FencedReader;
  /** Set while the processor has no capacity: it calls this once it has some again. */
  resume: (() => void) | undefined;
  /** Called when a fenced read or the commit script reports that a lease is no longer ours. */
  onFenced: (partition: number) => void = () => {};

  constructor(
    /** The wait for new entries (a connection of its own). */
    private readonly waiting: StreamWait,
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly processor: BatchProcessor,
    private readonly options: PartitionConsumerOptions,
    private readonly log: Logger,
  ) {
    this.fencedReader = new FencedReader(redis, options.group, options.nodeId);
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
    const { stream, group, nodeId } = this.options;
    await claimAllPending(this.redis, stream(partition), group, nodeId);
    const fresh = { cursor: '0', rewinds: 0, due: true, newest: '', pausedUntil: 0 };
    this.owned.set(partition, { lease, ...fresh });
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
    const pipe = batch(this.redis);
    for (const p of partitions) {
      // prettier-ignore
      pipe.xautoclaim(this.options.stream(p), this.options.group, this.options.nodeId, minIdleMs, '0-0', 'COUNT', 100, 'JUSTID');
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

  /** Re-reads our own pending entries of one partition (every one when absent) before anything new. */
  rewind(partition?: number): void {
    for (const [p, o] of this.owned) if (partition === undefined || p === partition) rewind(o);
    this.interrupt();
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

  /** Waits `ms`, or less if woken (a partition added or removed; with `resumable`, capacity). */
  private async pause(ms: number, resumable = false): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      if (resumable) this.resume = resolve;
      setTimeout(resolve, ms);
    });
    this.wake = this.resume = undefined;
  }

  private fenced(partition: number, message: string): void {
    this.log.warn({ partition }, message);
    this.owned.delete(partition);
    this.onFenced(partition);
  }

  /**
   * Marks the given partitions that have entries newer than the newest we read as due.
   * `blockMs`: waits that long for one (one XREAD BLOCK), and marks all of them due after a
   * failure and, with `safetyNet` (not while a paused partition's end interrupts the wait),
   * after a timeout or an interrupt: every partition is read now and then. Without it, looks
   * once (partitions not read this round, so none is starved while others keep the loop
   * busy), and marks all of them due only after a failure.
   */
  private async watch(
    partitions: [number, Owned][],
    blockMs?: number,
    safetyNet = true,
  ): Promise<void> {
    const byStream = new Map(partitions.map(([p, o]) => [this.options.stream(p), o]));
    const streams = [...byStream].map(([stream, o]): [string, string] => [
      stream,
      o.newest || '0-0',
    ]);
    let woke: string[] | undefined;
    try {
      woke =
        blockMs === undefined
          ? await this.waiting.poll(streams)
          : await this.waiting.wait(streams, blockMs);
    } catch (err) {
      // A lost connection (an UNBLOCK ends the wait without an error): the next round reads again.
      this.log.debug({ err }, 'waiting for funnel entries failed');
      if (blockMs !== undefined) await sleep(100);
    }
    if (woke === undefined || (woke.length === 0 && blockMs !== undefined && safetyNet))
      woke = [...byStream.keys()];
    for (const stream of woke) {
      const o = byStream.get(stream);
      if (o) o.due = true;
    }
  }

  private async loop(): Promise<void> {
    let failures = 0;
    /** The last round ended in a wait: it saw which partitions have new entries. */
    let watchedAll = false;
    let lastRescan = Date.now();
    while (this.running) {
      const { rescanMs = 0 } = this.options;
      if (rescanMs > 0 && Date.now() - lastRescan >= rescanMs) {
        lastRescan = Date.now();
        for (const o of this.owned.values()) rewind(o);
      }
      const capacity = this.processor.capacity?.() ?? Infinity;
      if (capacity <= 0 && this.owned.size > 0) {
        await this.pause(Math.min(this.options.blockMs, 100), true);
        continue;
      }
      const batch = Math.max(1, Math.min(this.options.batch, capacity));
      if (this.owned.size === 0) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = undefined;
        continue;
      }
      const now = Date.now();
      const owned = [...this.owned.entries()].filter(([, o]) => o.pausedUntil <= now);
      // The earliest end of a pause (Infinity: none paused).
      const ends = [...this.owned.values()].map((o) => o.pausedUntil).filter((t) => t > now);
      const resumeAt = Math.min(...ends, Infinity);
      const idle = owned.filter(([, o]) => !o.due && o.cursor === '>');
      if (idle.length === owned.length) {
        const untilResumed = Math.max(1, Math.min(this.options.blockMs, resumeAt - now));
        if (idle.length === 0) {
          await this.pause(untilResumed);
          continue;
        }
        // A paused partition resuming ends the wait early (no timeout: no safety-net reads).
        const paused = resumeAt < Infinity;
        const timer = paused ? setTimeout(() => this.waiting.interrupt(), untilResumed) : undefined;
        await this.watch(idle, this.options.blockMs, !paused);
        clearTimeout(timer);
        watchedAll = true;
        continue;
      }
      // The cursors as sent, and their rewinds: one rewound while we read must stay '0'.
      const partitions = owned
        .filter(([, o]) => o.due || o.cursor !== '>')
        .map(([p, o]) => [p, o, o.cursor, o.rewinds] as const);
      // Meanwhile, on the reader's connection: which of the others have new entries (unless
      // the wait that started this round just told).
      const watched = idle.length > 0 && !watchedAll ? this.watch(idle) : undefined;
      watchedAll = false;
      const entries: FunnelEntry[] = [];
      const read = new Set<number>();
      try {
        const requests = partitions.map(([p, o, cursor]) => ({
          lease: this.keys.lease(p),
          stream: this.options.stream(p),
          value: o.lease,
          cursor,
        }));
        const replies = await this.fencedReader.read(requests, batch);
        failures = 0;
        // Partitions whose whole pending list came back with room to spare: new entries too.
        const topUps: (FencedReadRequest & { p: number; o: Owned })[] = [];
        const take = (
          p: number,
          o: Owned,
          reply: FencedRead,
          request: FencedReadRequest,
        ): StreamEntry[] | undefined => {
          // Released while we were reading: leave the entries pending for the next owner.
          if (this.owned.get(p) !== o) return undefined;
          if (reply === 'fenced') {
            this.fenced(p, 'lease lost (fenced read); stopped reading the partition');
            return undefined;
          }
          const { entries: items, newest: last } = reply;
          if (items.length > 0) read.add(p);
          if (request.cursor === '>') {
            // Fewer new entries than asked for: that was all of them, up to the last one read.
            o.due = items.length >= (request.count ?? batch);
            if (!o.due) o.newest = items.at(-1)?.[0] ?? last;
          }
          for (const [id, fields] of items) {
            entries.push({
              partition: p,
              lease: o.lease,
              id,
              data: fields ? fieldValue(fields, 'e') : null,
              fields,
            });
          }
          return items;
        };
        partitions.forEach(([p, o, cursor, rewinds], i) => {
          const items = take(p, o, replies[i] as FencedRead, requests[i]!);
          if (!items || cursor === '>' || o.rewinds !== rewinds) return;
          // Walk on through our pending list; it is exhausted once a read returns fewer than
          // asked for: new entries are read in the same round (the newest id such a read
          // reports is no use for the wait, which would skip whatever was added before it).
          // Entries handed back for a retry rewind the cursor to '0' after the batch.
          o.cursor = items.length < batch ? '>' : (items.at(-1)?.[0] ?? '>');
          if (items.length < batch)
            topUps.push({ ...requests[i]!, cursor: '>', count: batch - items.length, p, o });
        });
        // Entries being retried (a poison message, a room waiting for its previous entry) must
        // not hold up the partition's other rooms: new entries join the batch after every
        // pending one, so a room's new entry still finds its pending predecessor (commit
        // script, ARGV[12]) and waits for it, while other rooms' entries commit.
        if (topUps.length > 0) {
          const more = await this.fencedReader.read(topUps, batch);
          topUps.forEach((r, i) => take(r.p, r.o, more[i] as FencedRead, r));
        }
        await watched;
      } catch (err) {
        await watched;
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

      // Nothing read: the next round finds nothing due and waits (an XREAD takes nothing
      // from the group), unless a partition is still catching up on its pending entries.
      if (entries.length === 0) continue;

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
      for (const p of outcome.retry) {
        const o = this.owned.get(p);
        if (!o) continue;
        rewind(o);
        o.pausedUntil = Date.now() + RETRY_PAUSE_MS;
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
