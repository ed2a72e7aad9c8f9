import { isRedisUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { BatchOutcome, BatchProcessor, FunnelEntry } from '../mesh/batch.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { RunnerChannel, SendOutcome } from './channel.ts';
import type { OutboxLedger } from './outbox-ledger.ts';
import { channelJob, context, type Held, type OutboxJob, sinceOf, toJob } from './outbox-job.ts';
import { backoff, decideRetry } from './retry-policy.ts';
import { type Lane, OutboxLanes } from './outbox-lanes.ts';
import type { Clock } from './token-bucket.ts';
import { within } from '../within.ts';

export interface OutboxRunnerOptions {
  /** Jobs read per round. @default 100 */
  readBatch: number;
  /** How often due retries move back into the outbox. @default 500 */
  promoteMs: number;
}

/**
 * Sends the outbox jobs of the partitions this node holds over their channels (DESIGN §7):
 * the outbox's {@link BatchProcessor}, fed by the same partition reader as the funnel. Each
 * send is fenced by the partition's lease (the ledger's `begin`, the last await before it);
 * retries back off (or wait for `Retry-After`), jobs out of attempts or time are
 * dead-lettered, and every recipient's state is recorded with the message.
 */
export class OutboxRunner implements BatchProcessor {
  private readonly lanes: OutboxLanes;
  /** Sends in flight, with their partition. */
  private readonly sends = new Map<Promise<void>, number>();
  /** Unexpected failures per delivery, by {@link deliveryKey} (in memory: a restart forgives them). */
  private readonly errors = new Map<string, number>();
  private readonly unknown = new Set<string>();
  private running = true;
  private lastGauges = 0;
  private pumpTimer: NodeJS.Timeout | undefined;
  private readonly timer: NodeJS.Timeout;
  /** Reads our pending jobs of a partition again (the partition reader's rewind). */
  rewind: (partition: number) => void = () => {};
  /** There is room for more jobs again (the partition reader's resume). */
  resume: () => void = () => {};
  /** A fallback's job (field `rcpt`) reached its final outcome: its side moves it on. */
  settled: (job: Readonly<OutboxJob>, outcome: string) => Promise<void> = async () => {};

  constructor(
    private readonly channels: ReadonlyMap<string, RunnerChannel>,
    private readonly ledger: OutboxLedger,
    private readonly metrics: Metrics,
    /** partition → our lease value (the coordinator's `heldLeases()`). */
    private readonly leases: () => ReadonlyMap<number, string>,
    private readonly options: OutboxRunnerOptions,
    private readonly log: Logger,
    private readonly clock: Clock = Date,
  ) {
    this.lanes = new OutboxLanes(channels, options.promoteMs, clock);
    this.timer = setInterval(() => void this.promote(), options.promoteMs);
    this.timer.unref();
  }

  capacity(): number {
    let inFlight = 0;
    for (const c of this.channels.values()) inFlight += c.maxInFlight;
    return Math.max(this.options.readBatch, inFlight) * 2 - this.lanes.size;
  }

  async process(entries: FunnelEntry[]): Promise<BatchOutcome> {
    const leases = this.leases();
    for (const { partition, lease, id: entryId, fields } of entries) {
      if (this.lanes.has({ partition, entryId })) continue;
      if (leases.get(partition) !== lease) continue; // the next owner has it
      if (fields === null) {
        // Deleted while pending (settled by an earlier owner): nothing to send.
        await this.ledger.settle({ partition, lease, entryId, job: toJob([]) });
        continue;
      }
      const job = toJob(fields);
      if (!this.channels.has(job.ch)) {
        // Left pending, for a node (or a restart) that has the channel.
        if (!this.unknown.has(job.ch))
          this.log.error(
            { channel: job.ch, partition },
            'outbox job for a channel this node does not have; it stays queued until a node with that channel runs',
          );
        this.unknown.add(job.ch);
        continue;
      }
      const held = { partition, lease, entryId, job };
      // Behind its lane's backlog: parked in the retry set at the lane's next free slot.
      const park = this.lanes.add(held);
      if (park) await this.settle(held, park);
    }
    this.pump();
    return { retry: new Set(), fenced: new Set() };
  }

  /**
   * The coordinator is about to release `partition`: take no new job of it, forget those
   * queued (they stay pending for its next owner), and wait for its sends in flight to be
   * settled while the lease is still ours, so the next owner sends none of them again.
   */
  async release(partition: number): Promise<void> {
    this.lanes.drop(partition);
    const inFlight = [...this.sends].filter(([, p]) => p === partition).map(([s]) => s);
    if (inFlight.length === 0) return;
    let longest = 0;
    for (const c of this.channels.values()) longest = Math.max(longest, c.sendTimeoutMs);
    this.log.info(
      { partition, inFlight: inFlight.length },
      'handing over a partition: waiting for its sends in flight',
    );
    if ((await within(Promise.allSettled(inFlight), longest + 1000)) === 'late')
      this.log.warn(
        { partition },
        'handing over a partition with a send still in flight; its next owner reconciles it',
      );
  }

  /** Stops sending; waits (at most `waitMs`) for sends in flight. Jobs not started stay pending. */
  async stop(waitMs: number): Promise<void> {
    this.running = false;
    clearInterval(this.timer);
    clearTimeout(this.pumpTimer);
    if ((await within(Promise.allSettled([...this.sends.keys()]), waitMs)) === 'late')
      this.log.warn(
        { inFlight: this.sends.size },
        'stopping with sends still in flight; the next owner reconciles them',
      );
    this.ledger.running = false;
    this.lanes.clear();
  }

  /** Starts every send the lanes allow; wakes itself for the rest. */
  private pump(): void {
    if (!this.running) return;
    clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
    const { jobs, wait } = this.lanes.ready();
    for (const { lane, held } of jobs) this.start(lane, held);
    if (wait !== Infinity) this.pumpTimer = setTimeout(() => this.pump(), wait);
  }

  private start(lane: Lane, held: Held): void {
    let retryAt: number | undefined;
    const send = this.send(lane, held)
      .then(
        (heldUntil) => {
          retryAt = heldUntil;
        },
        (err: unknown) => this.unexpected(held, err),
      )
      .finally(() => {
        this.lanes.finished(lane, held, retryAt);
        this.sends.delete(send);
        this.pump();
        if (this.capacity() > 0) this.resume();
      });
    this.sends.set(send, held.partition);
  }

  /**
   * One attempt; a time when its ordered lane holds the job (at its head, still pending)
   * until a retry then.
   */
  private async send(lane: Lane, held: Held): Promise<number | undefined> {
    const { job } = held;
    const { channel } = lane;
    if (this.leases().get(held.partition) !== held.lease) return undefined; // the next owner has it
    if (job.exp && this.clock.now() >= Number(job.exp)) {
      // Not delivered in time: not sent at all (a relay's recipient counts as expired).
      if (await this.ledger.expire(held)) this.count('expired', '', held);
      else this.fenced(held);
      return undefined;
    }
    const begin = await this.ledger.begin(held, this.clock.now());
    if (begin.go === 'fenced') return this.fenced(held);
    if (begin.go === 'already') {
      if (!(await this.settle(held))) return undefined;
      this.log.info(
        { ...context(held), ref: begin.ref, state: begin.status },
        'already with the receiver (an earlier attempt); not sent again',
      );
      this.count('reconciled', '', held, begin.status === 'failed' ? undefined : 'sent');
      return undefined;
    }
    if (begin.go === 'later') {
      const at = this.clock.now() + begin.waitMs + 100;
      if (!(await this.settle(held, { at, job: { ...job, since: sinceOf(held) } })))
        return undefined;
      this.log.info(
        { ...context(held), waitMs: begin.waitMs },
        'postponed: an earlier attempt (a former owner, or a timeout) may still be in flight',
      );
      this.count('postponed', '', held);
      return undefined;
    }
    if (begin.ambiguous) {
      this.metrics.outboxAmbiguous.inc({ channel: channel.name });
      this.log.warn(
        { ...context(held), earlier: begin.ambiguous.earlier },
        'sent again after an attempt whose outcome is unknown (a timeout, or an owner that died mid-send): the recipient may get it twice',
      );
    }
    const result: SendOutcome = await channel.send(channelJob(job));
    const code =
      result.code ?? (result.status === 'retry' || result.status === 'failed' ? 'error' : '');
    const ctx = { ...context(held), attempt: job.attempt, code };
    switch (result.status) {
      case 'sent':
      case 'delivered': {
        await this.ledger.sent(held, result.status, result.ref);
        if (!(await this.settle(held))) {
          this.log.warn(
            { ...ctx, ref: result.ref },
            'sent, but the lease was lost before it was settled; the next owner sees it and does not resend',
          );
          this.count('fenced_after_send', '', held);
          return undefined;
        }
        this.count(result.status, '', held);
        return undefined;
      }
      case 'failed': {
        if (result.deadLetter) {
          if (!(await this.deadLetter(held, result.deadLetter, result.error ?? code, code)))
            return undefined;
          this.log.error(
            { ...ctx, err: result.error },
            `delivery refused and dead-lettered (thr:dead, reason ${result.deadLetter})`,
          );
          this.count('dead', code, held);
          return undefined;
        }
        if (!(await this.settle(held))) return undefined;
        await this.ledger.failed(held, code);
        this.log[result.outcome ? 'debug' : 'warn']({ ...ctx, err: result.error }, 'not sent');
        this.count(result.outcome ?? 'failed', code, held);
        return undefined;
      }
      default:
        return this.retry(lane, held, result, code, begin.marker);
    }
  }

  private async retry(
    lane: Lane,
    held: Held,
    result: SendOutcome,
    code: string,
    marker: string,
  ): Promise<number | undefined> {
    const { job } = held;
    const since = sinceOf(held);
    const decision = decideRetry(result, job, Number(since), this.clock.now(), lane.channel.retry);
    const ctx = { ...context(held), code, err: result.error };
    if (decision.kind === 'exhausted') {
      const reason = `${lane.channel.name}_${decision.reason}`;
      if (!(await this.deadLetter(held, reason, decision.detail, code))) return undefined;
      this.log.warn(ctx, `delivery dead-lettered (${reason}, see thr:dead)`);
      this.count('dead', code, held);
      return undefined;
    }
    const { delayMs, attempt, throttles } = decision;
    if (result.slowDown || result.throttled) this.lanes.slowDown(held, delayMs);
    // An answer means the receiver did not take it; after a timeout nobody knows.
    const retried = {
      ...job,
      attempt: String(attempt),
      throttled: String(throttles),
      since,
      clean: result.ambiguous ? '' : marker,
    };
    this.log.info({ ...ctx, attempt, delayMs }, 'delivery failed; will retry');
    this.count('retried', code, held);
    if (lane.channel.ordered ?? true) {
      // It stays pending, at the head of its lane: nothing of the lane overtakes it.
      held.job = retried;
      return this.clock.now() + delayMs;
    }
    await this.settle(held, { at: this.clock.now() + delayMs, job: retried });
    return undefined;
  }

  /**
   * An error that is not an answer (a Redis timeout, a channel that threw): the job stays
   * pending and is read again after a backoff; after its channel's maxAttempts such failures
   * (Redis outages not counted) it is dead-lettered.
   */
  private async unexpected(held: Held, err: unknown): Promise<void> {
    if (this.leases().get(held.partition) !== held.lease) return; // the next owner has it
    const channel = this.channels.get(held.job.ch) as RunnerChannel;
    const failures = (this.errors.get(deliveryKey(held)) ?? 0) + 1;
    const ctx = { ...context(held), entry: held.entryId, failures, err };
    if (failures >= channel.retry.maxAttempts && !isRedisUnavailable(err)) {
      this.errors.delete(deliveryKey(held));
      const detail = `${failures} unexpected failures: ${(err as Error)?.message ?? String(err)}`;
      try {
        if (!(await this.deadLetter(held, `${channel.name}_error`, detail, 'error'))) return;
      } catch (e) {
        this.log.error({ ...ctx, err: e }, 'could not dead-letter an outbox job; it stays pending');
        this.reread(held, failures, channel);
        return;
      }
      this.log.error(
        ctx,
        `outbox job dead-lettered after repeated unexpected failures (thr:dead, reason ${channel.name}_error)`,
      );
      this.count('dead', 'error', held);
      return;
    }
    if (this.errors.size > 100_000) this.errors.clear();
    this.errors.set(deliveryKey(held), failures);
    this.log.warn(
      ctx,
      'outbox job failed unexpectedly; it stays pending and is tried again shortly',
    );
    this.reread(held, failures, channel);
  }

  private reread(held: Held, failures: number, channel: RunnerChannel): void {
    if (!this.running) return;
    setTimeout(() => this.rewind(held.partition), backoff(failures, channel.retry)).unref();
  }

  private async settle(
    held: Held,
    retry?: Parameters<OutboxLedger['settle']>[1],
  ): Promise<boolean> {
    if (await this.ledger.settle(held, retry)) return this.lanes.settled(held);
    this.fenced(held);
    return false;
  }

  private async deadLetter(
    held: Held,
    reason: string,
    detail: string,
    code: string,
  ): Promise<boolean> {
    if (!(await this.ledger.deadLetter(held, reason, detail, code))) {
      this.fenced(held);
      return false;
    }
    this.metrics.deadLetters.inc({ reason });
    return true;
  }

  /**
   * The lease is not ours (any more, or not yet again): forget the partition's jobs; its next
   * owner has them. Our pending jobs are read again shortly: should the lease be ours after
   * all, they are sent; if not, the fenced read stops the partition's reading.
   */
  private fenced(held: Held): undefined {
    this.log.warn(
      { partition: held.partition },
      'outbox: the partition lease is not ours; stopped sending its jobs',
    );
    this.lanes.drop(held.partition);
    if (this.running) setTimeout(() => this.rewind(held.partition), 250).unref();
    return undefined;
  }

  /** Due retries back into the outbox; about once a second, the outbox gauges. */
  private async promote(): Promise<void> {
    if (!this.running) return;
    const partitions = [...this.leases().keys()];
    const now = this.clock.now();
    try {
      await this.ledger.promote(partitions, now);
      if (now - this.lastGauges >= 1000) {
        this.lastGauges = now;
        await this.ledger.gauge(partitions, now, this.metrics);
      }
    } catch (err) {
      this.log.debug({ err }, 'promoting outbox retries failed; trying again');
    }
    this.pump();
  }

  private count(outcome: string, code: string, held: Held, delivery: string = outcome): void {
    const channel = held.job.ch;
    this.metrics.outboxJobs.inc({ channel, outcome, code });
    if (outcome !== 'postponed') this.errors.delete(deliveryKey(held));
    if (held.job.kind === 'relay' && FINAL.includes(delivery))
      this.metrics.deliveries.inc({ channel, outcome: delivery });
    if (held.job.rcpt && FINAL.includes(delivery))
      this.settled(held.job, delivery).catch((err: unknown) =>
        this.log.warn({ err, ...context(held) }, 'fallback recipient not moved on'),
      );
  }
}

/** Outcomes that settle a recipient, counted in threshold_deliveries_total. */
const FINAL = ['sent', 'delivered', 'failed', 'dead', 'skipped', 'expired'];

/** A delivery's identity, the same when its job is rescheduled under another entry id. */
function deliveryKey({ job }: Held): string {
  return `${job.ch}|${job.kind}|${job.to}|${job.msg}`;
}
