import { entryKey } from '../redis/keys.ts';
import type { RunnerChannel } from './channel.ts';
import { type Held, type OutboxJob, sinceOf } from './outbox-job.ts';
import { type Clock, TokenBuckets } from './token-bucket.ts';

/** A queue of jobs that share a rate and an order (an SMS sending number, a webhook member). */
export interface Lane {
  key: string;
  channel: RunnerChannel;
  queue: Held[];
  inFlight: number;
  /** An ordered lane whose head answered `retry` sends nothing before this time. */
  heldUntil: number;
}

/**
 * The outbox runner's jobs in memory, in lanes: which job may start now (each channel's
 * in-flight bound, each lane's rate and order), and which must be parked in the retry set
 * behind its lane's backlog so other lanes are not stuck behind it.
 */
export class OutboxLanes {
  private readonly lanes = new Map<string, Lane>();
  private readonly buckets = new Map<string, TokenBuckets>();
  /** Jobs queued or in flight, by {@link jobKey}. */
  private readonly inMemory = new Set<string>();
  private readonly inFlight = new Map<string, number>();
  /** Lane → the last time slot given to a parked job. */
  private readonly slots = new Map<string, number>();
  /**
   * Jobs this node settled lately. A read of pending entries (a rewind) may have returned
   * one just before it was settled; taken again, it would be sent again.
   */
  private readonly done = new Set<string>();

  constructor(
    private readonly channels: ReadonlyMap<string, RunnerChannel>,
    /** How soon a parked job is back after its slot: until then new jobs go behind it. */
    private readonly promoteMs: number,
    private readonly clock: Clock,
  ) {
    for (const c of channels.values())
      if (c.rate) this.buckets.set(c.name, new TokenBuckets(c.rate.perSecond, c.rate.burst, clock));
  }

  get size(): number {
    return this.inMemory.size;
  }

  /** True while the job is queued or in flight here, or after this node settled it. */
  has(held: Pick<Held, 'partition' | 'entryId'>): boolean {
    const key = jobKey(held);
    return this.inMemory.has(key) || this.done.has(key);
  }

  /** The job was settled (acknowledged and deleted): an entry id never comes back. */
  settled(held: Pick<Held, 'partition' | 'entryId'>): true {
    if (this.done.size >= MAX_DONE) this.done.clear();
    this.done.add(jobKey(held));
    return true;
  }

  /**
   * Queues a job in its lane, or returns where to park it instead (the lane has a backlog
   * in the retry set, or its queue is full): the time slot and the job to park.
   */
  add(held: Held): { at: number; job: OutboxJob } | undefined {
    const lane = this.laneOf(held);
    const { channel, key } = lane;
    const now = this.clock.now();
    const gap = channel.rate ? 1000 / channel.rate.perSecond : 1;
    const lastSlot = this.slots.get(key) ?? 0;
    // The last parked job is back within promoteMs of its slot: until it has had the chance,
    // a new job still goes behind it, so a lane's jobs keep their order.
    const backlog = lastSlot + 2 * this.promoteMs > now;
    if (!backlog) this.slots.delete(key);
    const returning = Boolean(held.job.slot);
    const full = lane.queue.length >= channel.maxQueuedPerLane * (returning ? 2 : 1);
    if (full || (!returning && backlog)) {
      const slot = Math.ceil(Math.max(now + lane.queue.length * gap, lastSlot) + gap);
      this.slots.set(key, slot);
      this.prune(lane);
      return { at: slot, job: { ...held.job, slot: String(slot), since: sinceOf(held) } };
    }
    // A high-priority job (a notification's `pri`) goes ahead of the others waiting, low
    // ones behind them; jobs of one priority keep their order.
    const rank = RANK[held.job.pri ?? ''] ?? 1;
    const behind = lane.queue.findIndex((h) => (RANK[h.job.pri ?? ''] ?? 1) > rank);
    if (behind < 0) lane.queue.push(held);
    else lane.queue.splice(behind, 0, held);
    this.inMemory.add(jobKey(held));
    return undefined;
  }

  /**
   * Takes every job that may start now (marked in flight: call {@link finished} after it);
   * `wait` is how soon another one may (Infinity: none is waiting for time).
   */
  ready(): { jobs: { lane: Lane; held: Held }[]; wait: number } {
    const now = this.clock.now();
    const jobs: { lane: Lane; held: Held }[] = [];
    let wait = Infinity;
    for (const lane of this.lanes.values()) {
      const { channel } = lane;
      if (lane.heldUntil > now) {
        wait = Math.min(wait, lane.heldUntil - now);
        continue;
      }
      while (
        lane.queue.length > 0 &&
        (this.inFlight.get(channel.name) ?? 0) < channel.maxInFlight
      ) {
        if ((channel.ordered ?? true) && lane.inFlight > 0) break;
        const delay = this.buckets.get(channel.name)?.take(lane.key) ?? 0;
        if (delay > 0) {
          wait = Math.min(wait, delay);
          break;
        }
        lane.inFlight++;
        this.inFlight.set(channel.name, (this.inFlight.get(channel.name) ?? 0) + 1);
        jobs.push({ lane, held: lane.queue.shift() as Held });
      }
      this.prune(lane);
    }
    for (const b of this.buckets.values()) b.prune();
    return { jobs, wait };
  }

  /** A send ended; `retryAt`: an ordered lane keeps the job at its head until then. */
  finished(lane: Lane, held: Held, retryAt?: number): void {
    lane.inFlight--;
    const name = lane.channel.name;
    this.inFlight.set(name, (this.inFlight.get(name) ?? 1) - 1);
    if (retryAt === undefined) this.inMemory.delete(jobKey(held));
    else {
      lane.heldUntil = retryAt;
      lane.queue.unshift(held);
    }
    if (lane.queue.length > 0 || lane.inFlight > 0) this.lanes.set(lane.key, lane);
  }

  /** The receiver said "too fast": no send in the job's lane for `ms`. */
  slowDown(held: Held, ms: number): void {
    const lane = this.laneOf(held);
    this.buckets.get(lane.channel.name)?.hold(lane.key, ms);
    this.prune(lane);
  }

  /** Forgets a partition's queued jobs (they stay pending for its next owner). */
  drop(partition: number): void {
    for (const lane of this.lanes.values()) {
      for (const h of lane.queue) if (h.partition === partition) this.inMemory.delete(jobKey(h));
      lane.queue = lane.queue.filter((h) => h.partition !== partition);
      this.prune(lane);
    }
  }

  clear(): void {
    this.lanes.clear();
    this.inMemory.clear();
  }

  private laneOf(held: Held): Lane {
    const channel = this.channels.get(held.job.ch) as RunnerChannel;
    const key = `${channel.name}|${channel.lane?.(held.job) ?? held.job.to}`;
    const lane = this.lanes.get(key) ?? { key, channel, queue: [], inFlight: 0, heldUntil: 0 };
    this.lanes.set(key, lane);
    return lane;
  }

  private prune(lane: Lane): void {
    if (lane.queue.length === 0 && lane.inFlight === 0) this.lanes.delete(lane.key);
  }
}

const RANK: Record<string, number> = { high: 0, normal: 1, low: 2 };
/** Settled job ids remembered (a rewind's stale read comes within moments of the settle). */
const MAX_DONE = 10_000;

/** A job's identity on this node (see {@link entryKey}). */
function jobKey(held: Pick<Held, 'partition' | 'entryId'>): string {
  return entryKey(held.partition, held.entryId);
}
