import type { Redis } from 'ioredis';
import { RELAY_GROUP } from '../funnel/funnel.ts';
import type { Logger } from '../log.ts';
import type { Keys } from '../redis/keys.ts';

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

type XReadGroupReply = [stream: string, entries: [id: string, fields: string[] | null][]][] | null;

/**
 * Reads the funnel partitions this node owns, all in one blocking XREADGROUP on a
 * connection of its own, and feeds each batch to the processor. One batch is in hand at a
 * time, so each partition (and so each room) is processed in stream order.
 */
export class PartitionConsumer {
  private readonly owned = new Map<number, Owned>();
  private readonly byStream = new Map<string, number>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private batchDone: Promise<unknown> = Promise.resolve();
  private wake: (() => void) | undefined;
  private readerId: number | undefined;
  private reading = false;
  /** Called when the commit script reports that a lease is no longer ours. */
  onFenced: (partition: number) => void = () => {};

  constructor(
    private readonly reader: Redis,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly processor: BatchProcessor,
    private readonly options: PartitionConsumerOptions,
    private readonly log: Logger,
  ) {}

  get partitions(): number[] {
    return [...this.owned.keys()];
  }

  async start(): Promise<void> {
    this.readerId = Number(await this.reader.client('ID'));
    this.reader.on('ready', () => {
      // A reply lost with the old connection may have moved entries into our pending list.
      this.rewind();
      this.reader.client('ID').then(
        (id) => {
          this.readerId = Number(id);
        },
        () => {},
      );
    });
    this.running = true;
    this.loopDone = this.loop();
  }

  /**
   * Starts consuming a partition we just leased: its pending entries, whoever read them
   * last, become ours and are processed before anything new.
   */
  async add(partition: number, lease: string): Promise<void> {
    const key = this.keys.funnel(partition);
    let cursor = '0-0';
    do {
      const reply = (await this.redis.xautoclaim(
        key,
        RELAY_GROUP,
        this.options.nodeId,
        0,
        cursor,
        'COUNT',
        1000,
        'JUSTID',
      )) as [string, ...unknown[]];
      cursor = reply[0];
    } while (cursor !== '0-0');
    this.byStream.set(key, partition);
    this.owned.set(partition, { lease, cursor: '0', rewinds: 0 });
    this.interrupt();
  }

  /**
   * Safety net for entries stranded in a pending list: read by a node that lost its lease
   * meanwhile (a stale owner still blocked in XREADGROUP), or by a handoff racing a read.
   * Claims whatever has been pending longer than `minIdleMs` and re-reads it.
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
    this.byStream.delete(this.keys.funnel(partition));
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
    if (this.reading && this.readerId !== undefined) {
      this.redis.client('UNBLOCK', this.readerId).catch(() => {});
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
      const catchingUp = partitions.some(([, , cursor]) => cursor === '0');
      const args: (string | number)[] = [
        'GROUP',
        RELAY_GROUP,
        this.options.nodeId,
        'COUNT',
        this.options.batch,
      ];
      // A read from '0' answers at once, so only block when every partition reads new entries.
      if (!catchingUp) args.push('BLOCK', this.options.blockMs);
      args.push(
        'STREAMS',
        ...partitions.map(([p]) => this.keys.funnel(p)),
        ...partitions.map(([, , cursor]) => cursor),
      );

      let reply: XReadGroupReply;
      this.reading = true;
      try {
        reply = (await this.reader.call('XREADGROUP', ...args)) as XReadGroupReply;
        failures = 0;
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
      } finally {
        this.reading = false;
      }

      const entries: FunnelEntry[] = [];
      const read = new Set<number>();
      for (const [stream, items] of reply ?? []) {
        const p = this.byStream.get(stream);
        const owned = p === undefined ? undefined : this.owned.get(p);
        // Released while we were reading: leave the entries pending for the next owner.
        if (p === undefined || !owned) continue;
        if (items.length > 0) read.add(p);
        for (const [id, fields] of items) {
          entries.push({
            partition: p,
            lease: owned.lease,
            id,
            data: fields ? fieldValue(fields, 'e') : null,
          });
        }
      }
      for (const [p, o, cursor, rewinds] of partitions) {
        // Our pending list is exhausted once a read from '0' returns nothing.
        if (cursor === '0' && o.rewinds === rewinds && !read.has(p)) o.cursor = '>';
      }
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
        this.log.warn(
          { partition: p },
          'lease lost (fenced by the commit script); stopped reading the partition',
        );
        this.owned.delete(p);
        this.byStream.delete(this.keys.funnel(p));
        this.onFenced(p);
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
