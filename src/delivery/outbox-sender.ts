import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { type SmsSendError, isRedisUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { entryKey, type Keys } from '../redis/keys.ts';
import {
  BlockingWait,
  claimAllPending,
  type FencedRead,
  FencedReader,
  type StreamEntry,
} from '../redis/streams.ts';
import { isOptedOut, type MemberSettingsStore } from './member-settings.ts';
import {
  context,
  type Held,
  type OutboxJob,
  parseMedia,
  retrySince,
  SENDERS_GROUP,
  sinceOf,
  toJob,
} from './outbox-job.ts';
import { asSendError, backoff, classifyFailure, type RetryPolicy } from './send-failure.ts';
import type { OutboundSms, SmsClient } from './sms-client.ts';
import { type Clock, TokenBuckets } from './token-bucket.ts';

export interface OutboxSenderOptions extends RetryPolicy {
  nodeId: string;
  /** Texts per second per sending number. @default 1 */
  ratePerSecond: number;
  /** Texts a number may send at once after a quiet spell. @default 1 */
  burst: number;
  /** How long one Twilio request may take; an attempt younger than this may still be in flight. @default 15000 */
  sendTimeoutMs: number;
  /** Jobs read per round. @default 100 */
  readBatch: number;
  /** Twilio requests in flight at once. @default 16 */
  maxInFlight: number;
  /** Jobs held in memory per sending number; more wait in the retry set. @default 60 */
  maxQueuedPerNumber: number;
  /** How long one outbox read waits for new jobs. @default 500 */
  blockMs: number;
  /** Base of the status callback URL (`<publicUrl>/twilio/status`); "" sends none. */
  publicUrl: string;
  /** Entries kept in the dead-letter stream (approximate). @default 100000 */
  deadLength: number;
  /** Lifetime of a delivery hash this sender creates (keyword replies' send markers). @default 86400000 */
  markerTtlMs: number;
}

type Outcome =
  | 'sent'
  | 'retried'
  | 'failed'
  | 'dead'
  | 'skipped'
  | 'postponed'
  | 'reconciled'
  | 'fenced_after_send';

/** begin-send-2.lua's answers. */
const BEGIN_FENCED = -1;
const BEGIN_ALREADY = 2;
const BEGIN_POSTPONE = 3;
const BEGIN_AMBIGUOUS = 4;

/** How often our own pending entries are read again, whatever happened: nothing stays stranded. */
const PENDING_RESCAN_MS = 30_000;

/**
 * Sends the SMS jobs of the partitions this node holds (DESIGN §1, §4), away from the
 * partition consumer: one blocking read over their outboxes, a token bucket per sending
 * number, a bound on requests in flight, retries scheduled durably in the partition's retry
 * set. Every Twilio call is fenced by the partition's lease (begin-send-2.lua, the last await
 * before the request), and every acknowledgement too.
 */
export class OutboxSender {
  private readonly buckets: TokenBuckets;
  private readonly queues = new Map<string, Held[]>();
  /** Jobs queued or in flight, by {@link jobKey}. */
  private readonly inMemory = new Set<string>();
  /**
   * Partitions we read. The cursor walks our own pending entries (ids after it) before new
   * ones ('>'): after a takeover, a restart or an unexpected error, jobs read earlier are sent.
   */
  private readonly reading = new Map<number, { lease: string; cursor: string }>();
  private inFlight = 0;
  /** Sends in flight, with their partition. */
  private readonly sends = new Map<Promise<void>, number>();
  /** Unexpected failures per outbox entry, by {@link jobKey} (in memory: a restart forgives them). */
  private readonly errors = new Map<string, number>();
  /** Sending number → the last time slot given to a parked job. */
  private readonly slots = new Map<string, number>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private pumpTimer: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private lastGauges = 0;
  private lastRescan = 0;
  /** The wait for new jobs, on the reader's connection. */
  private readonly waiting: BlockingWait;
  private readonly fencedReader: FencedReader;
  /** Partitions found fenced, left alone until the time given (the coordinator catches up). */
  private readonly paused = new Map<number, number>();

  constructor(
    private readonly reader: Redis,
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly client: SmsClient,
    private readonly members: MemberSettingsStore,
    private readonly metrics: Metrics,
    /** partition → our lease value (the coordinator's `heldLeases()`). */
    private readonly leases: () => ReadonlyMap<number, string>,
    private readonly options: OutboxSenderOptions,
    private readonly log: Logger,
    private readonly clock: Clock = Date,
  ) {
    this.buckets = new TokenBuckets(options.ratePerSecond, options.burst, clock);
    this.waiting = new BlockingWait(reader, redis);
    this.fencedReader = new FencedReader(redis, SENDERS_GROUP, options.nodeId);
  }

  private get queued(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  start(): void {
    this.running = true;
    this.lastRescan = this.clock.now();
    this.loopDone = this.loop();
  }

  /**
   * Stops reading and waits (at most `waitMs`) for texts in flight; jobs not started stay
   * pending for the next owner, and one still in flight is reconciled by it.
   */
  async stop(waitMs = this.options.sendTimeoutMs): Promise<void> {
    this.running = false;
    this.waiting.interrupt();
    clearTimeout(this.pumpTimer);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.loopDone;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), waitMs);
    });
    if ((await Promise.race([Promise.allSettled([...this.sends.keys()]), late])) === 'late')
      this.log.warn(
        { inFlight: this.sends.size },
        'stopping with texts still in flight; the next owner reconciles them (threshold_sms_ambiguous_total)',
      );
    clearTimeout(timer);
    this.queues.clear();
    this.inMemory.clear();
    this.reading.clear();
  }

  /**
   * The coordinator is about to release `partition` (a graceful handoff): take no new job of
   * it, forget those queued but not started (they stay pending, and its next owner claims
   * them), and wait for the texts of it in flight to be settled while the lease is still ours
   * (at most sms.sendTimeoutMs and a little), so the next owner sends none of them again.
   */
  async release(partition: number): Promise<void> {
    this.forget(partition);
    const inFlight = [...this.sends].filter(([, p]) => p === partition).map(([s]) => s);
    if (inFlight.length === 0) return;
    this.log.info(
      { partition, inFlight: inFlight.length },
      'handing over a partition: waiting for its texts in flight',
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), this.options.sendTimeoutMs + 1000);
    });
    const result = await Promise.race([Promise.allSettled(inFlight), timeout]);
    clearTimeout(timer);
    if (result === 'timeout')
      this.log.warn(
        { partition },
        'handing over a partition with a text still in flight; its next owner reconciles it (see threshold_sms_ambiguous_total)',
      );
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      try {
        await this.follow();
        await this.promote();
        await this.gauges();
        await this.read();
        failures = 0;
      } catch (err) {
        failures++;
        // A read whose reply was lost moved jobs into our pending list: read those first.
        for (const state of this.reading.values()) state.cursor = '0';
        // One line per outage, not one per round.
        if (failures === 1)
          this.log.warn({ err }, 'outbox read failed (is Redis reachable?); retrying');
        await sleep(Math.min(2000, 100 * failures));
      }
    }
  }

  /** Follows the leases: new partitions take over their pending jobs, lost ones are dropped. */
  private async follow(): Promise<void> {
    const held = this.leases();
    for (const p of [...this.reading.keys()]) {
      if (held.get(p) === this.reading.get(p)?.lease) continue;
      this.forget(p);
    }
    const now = this.clock.now();
    const rescan = now - this.lastRescan >= PENDING_RESCAN_MS;
    if (rescan) this.lastRescan = now;
    for (const [p, lease] of held) {
      const state = this.reading.get(p);
      if (state) {
        if (rescan) state.cursor = '0';
        continue;
      }
      // A partition being released is not in `held` any more (the coordinator forgets it first).
      if ((this.paused.get(p) ?? 0) > now) continue;
      this.paused.delete(p);
      // A former owner's jobs: one it was sending when it died or paused left a marker
      // (begin-send-2.lua) and is reconciled, not sent blindly.
      await claimAllPending(this.redis, this.keys.outbox(p), SENDERS_GROUP, this.options.nodeId);
      this.reading.set(p, { lease, cursor: '0' });
    }
  }

  /** Blocks until an outbox has a job newer than the given id, blockMs passes, or stop(). */
  private async waitForJobs(newest: [stream: string, id: string][]): Promise<void> {
    if (newest.length === 0) return sleep(Math.min(this.options.blockMs, 100));
    await this.waiting.wait(newest, this.options.blockMs);
  }

  /** Stops reading a partition and forgets its jobs not started; they stay pending. */
  private forget(partition: number): void {
    if (!this.reading.delete(partition)) return;
    this.drop(partition);
    this.metrics.outboxDepth.remove({ partition: String(partition) });
    this.metrics.outboxOldest.remove({ partition: String(partition) });
  }

  /** Jobs of a partition we no longer hold: its new owner claims them. */
  private drop(partition: number): void {
    for (const [number, queue] of this.queues) {
      const kept = queue.filter((h) => h.partition !== partition);
      for (const h of queue) if (h.partition === partition) this.inMemory.delete(jobKey(h));
      if (kept.length > 0) this.queues.set(number, kept);
      else this.queues.delete(number);
    }
  }

  private async promote(): Promise<void> {
    if (this.reading.size === 0) return;
    const now = this.clock.now();
    const pipe = this.redis.pipeline();
    for (const p of this.reading.keys())
      pipe.promoteRetries(this.keys.outboxRetry(p), this.keys.outbox(p), now, 1000);
    await pipe.exec();
  }

  /**
   * Outbox depth (stream plus retry set) and the age of the oldest job, about once a second.
   * A job waiting in the retry set counts from when it first entered the outbox (its `since`);
   * of the retry set, the job due first is looked at.
   */
  private async gauges(): Promise<void> {
    const now = this.clock.now();
    if (now - this.lastGauges < 1000 || this.reading.size === 0) return;
    this.lastGauges = now;
    const partitions = [...this.reading.keys()];
    const pipe = this.redis.pipeline();
    for (const p of partitions)
      pipe
        .xlen(this.keys.outbox(p))
        .zcard(this.keys.outboxRetry(p))
        .xrange(this.keys.outbox(p), '-', '+', 'COUNT', 1)
        .zrange(this.keys.outboxRetry(p), 0, 0);
    const replies = (await pipe.exec()) ?? [];
    partitions.forEach((p, i) => {
      const [len, retries, first, due] = replies.slice(i * 4, i * 4 + 4).map(([, v]) => v) as [
        number,
        number,
        [string, string[]][],
        string[],
      ];
      const label = { partition: String(p) };
      this.metrics.outboxDepth.set(label, (len ?? 0) + (retries ?? 0));
      const times: number[] = [];
      const oldest = first?.[0]?.[0];
      if (oldest) times.push(Number.parseInt(oldest, 10));
      const since = due?.[0] ? retrySince(due[0]) : undefined;
      if (since !== undefined) times.push(since);
      this.metrics.outboxOldest.set(
        label,
        times.length > 0 ? Math.max(0, now - Math.min(...times)) / 1000 : 0,
      );
    });
  }

  private async read(): Promise<void> {
    const room = Math.max(this.options.readBatch, this.options.maxInFlight) * 2 - this.queued;
    if (this.reading.size === 0 || room <= 0) {
      await sleep(Math.min(this.options.blockMs, 100));
      return;
    }
    const partitions = [...this.reading.entries()].map(([p, s]) => ({
      p,
      lease: s.lease,
      cursor: s.cursor,
    }));
    const rereading = partitions.some(({ cursor }) => cursor !== '>');
    // Fenced reads (lua/read-fenced-2.lua): a sender whose lease is gone, or that has not yet
    // noticed a handoff, takes nothing into its pending list that the new owner would miss.
    const count = Math.min(room, this.options.readBatch);
    const replies = await this.fencedReader.read(
      partitions.map(({ p, lease, cursor }) => ({
        lease: this.keys.lease(p),
        stream: this.keys.outbox(p),
        value: lease,
        cursor,
      })),
      count,
    );
    const got = new Map<string, StreamEntry[]>();
    const newest: [string, string][] = [];
    partitions.forEach(({ p, lease }, i) => {
      const reply = replies[i] as FencedRead;
      if (reply === 'fenced') {
        this.fenced(p, lease);
        return;
      }
      got.set(this.keys.outbox(p), reply.entries);
      if (reply.newest) newest.push([this.keys.outbox(p), reply.newest]);
    });
    if (!rereading && got.size > 0 && [...got.values()].every((e) => e.length === 0)) {
      await this.waitForJobs(newest);
      return;
    }
    for (const { p, lease, cursor } of partitions) {
      const state = this.reading.get(p);
      // Released or lost while we read: what we got stays pending for the next owner.
      if (state?.lease !== lease) continue;
      const entries = got.get(this.keys.outbox(p)) ?? [];
      // Unless a re-read was asked for meanwhile (the cursor set back to '0'), walk on.
      if (cursor !== '>' && state.cursor === cursor)
        state.cursor = entries.length === 0 ? '>' : (entries[entries.length - 1]?.[0] ?? '>');
      for (const [entryId, fields] of entries) {
        if (this.inMemory.has(jobKey({ partition: p, entryId }))) continue;
        if (fields === null) {
          // Deleted while pending (settled by an earlier owner): nothing to send.
          await this.redis.xack(this.keys.outbox(p), SENDERS_GROUP, entryId);
          continue;
        }
        if (this.reading.get(p)?.lease !== lease) break;
        await this.enqueue({ partition: p, lease, entryId, job: toJob(fields) });
      }
    }
    this.pump();
  }

  private async enqueue(held: Held): Promise<void> {
    const number = held.job.from;
    const queue = this.queues.get(number) ?? [];
    const now = this.clock.now();
    const gap = 1000 / this.options.ratePerSecond;
    const lastSlot = this.slots.get(number) ?? 0;
    // The last parked job is promoted on a loop turn after its slot: until it has had the
    // chance (a turn waits at most blockMs), a new job still goes behind it.
    const backlog = lastSlot + 2 * this.options.blockMs > now;
    if (!backlog) this.slots.delete(number);
    // A parked job whose slot came is taken in turn (unless the backlog grew far beyond the
    // bound); a new one waits behind the number's parked jobs, so its texts keep their order.
    const returning = Boolean(held.job.slot);
    const full = queue.length >= this.options.maxQueuedPerNumber * (returning ? 2 : 1);
    if (full || (!returning && backlog)) {
      // This number has a backlog: park the job in the retry set at its number's next free
      // slot, so other numbers' texts are not stuck behind it in memory.
      const slot = Math.ceil(Math.max(now + queue.length * gap, lastSlot) + gap);
      this.slots.set(number, slot);
      const job = { ...held.job, slot: String(slot), since: sinceOf(held) };
      await this.settle(held, { at: slot, job });
      return;
    }
    queue.push(held);
    this.queues.set(number, queue);
    this.inMemory.add(jobKey(held));
  }

  /** Starts every send the buckets and the in-flight bound allow; wakes itself for the rest. */
  private pump(): void {
    if (!this.running) return;
    clearTimeout(this.pumpTimer);
    this.pumpTimer = undefined;
    let wait = Infinity;
    for (const [number, queue] of this.queues) {
      while (queue.length > 0 && this.inFlight < this.options.maxInFlight) {
        const delay = this.buckets.take(number);
        if (delay > 0) {
          wait = Math.min(wait, delay);
          break;
        }
        const held = queue.shift() as Held;
        this.inFlight++;
        const send = this.send(held)
          .then(
            () => {
              this.errors.delete(jobKey(held));
            },
            (err: unknown) => this.unexpected(held, err),
          )
          .finally(() => {
            this.inFlight--;
            this.inMemory.delete(jobKey(held));
            this.sends.delete(send);
            this.pump();
          });
        this.sends.set(send, held.partition);
      }
      if (queue.length === 0) this.queues.delete(number);
    }
    if (wait !== Infinity) this.pumpTimer = setTimeout(() => this.pump(), wait);
    this.buckets.prune();
  }

  private async send(held: Held): Promise<void> {
    const { job, partition } = held;
    // Released, or lost: the job stays pending for the partition's next owner.
    if (this.reading.get(partition)?.lease !== held.lease) return;

    const settings = await this.members.get(`phone:${job.to}`);
    if (isOptedOut(settings, job.from) || settings.invalid) {
      const code = settings.invalid ? 'invalid' : 'opted_out';
      if (await this.settle(held)) {
        await this.finalStatus(held, 'failed', code);
        this.count('skipped', code, job);
      }
      return;
    }
    const sms: OutboundSms = { to: job.to, from: job.from, body: job.body };
    if (job.media) sms.mediaUrl = parseMedia(job.media);
    const d = job.kind === 'relay' && this.options.publicUrl ? job.d : '';
    if (d)
      sms.statusCallback = `${this.options.publicUrl.replace(/\/+$/, '')}/twilio/status?d=${encodeURIComponent(d)}`;
    const { key, prefix } = this.delivery(held);

    // The fence, and the last await before the request: nothing may come between them.
    // prettier-ignore
    const begin = await this.redis.beginSend(
      this.keys.lease(partition), key, held.lease, prefix, this.clock.now(), job.clean ?? '',
      this.options.sendTimeoutMs, this.options.markerTtlMs,
    );
    const [status, a = '', b = ''] = begin;
    if (status === BEGIN_FENCED) return this.fenced(held.partition, held.lease);
    if (status === BEGIN_ALREADY) return this.reconciled(held, String(a), String(b));
    if (status === BEGIN_POSTPONE) return this.postpone(held, Number(a));
    const marker = String(a);
    if (status === BEGIN_AMBIGUOUS) {
      this.metrics.smsAmbiguous.inc();
      this.log.warn(
        { ...context(held), earlier: String(b) },
        'SMS sent again after an attempt whose outcome is unknown (a timeout, or an owner that died mid-send): the recipient may get it twice',
      );
    }
    let sid: string;
    try {
      ({ sid } = await this.client.send(sms));
    } catch (err) {
      await this.failed(held, asSendError(err), marker);
      return;
    }
    // Unfenced, before the settle: should the lease be gone, the next owner sees the sid. A
    // relay's recipient moves to `sent` (never back from a later state a status callback set),
    // so its status is right without callbacks too.
    await this.waitOut(() =>
      job.kind === 'relay'
        ? this.redis.recordStatus(key, job.to, 'sent', '', sid)
        : this.redis.recordSid(key, prefix, sid),
    );
    if (!(await this.settle(held))) {
      this.log.warn(
        { ...context(held), sid },
        'SMS sent, but the lease was lost before it was settled (fenced after send); the next owner will see the sid and not resend',
      );
      this.count('fenced_after_send', '', job);
      return;
    }
    this.metrics.smsSent.inc({ number: job.from });
    this.count('sent', '', job);
  }

  /** The hash and field prefix of a job's send marker and sid (see begin-send-2.lua). */
  private delivery(held: Held): { key: string; prefix: string } {
    const { job, partition } = held;
    if (job.kind === 'reply')
      return { key: this.keys.reply(partition, job.msg), prefix: `reply:${job.to}` };
    return {
      key: this.keys.msg(partition, job.msg),
      prefix: `${job.kind === 'relay' ? 'sms' : job.kind}:${job.to}`,
    };
  }

  /** The lease is not ours (any more, or not yet again): stop reading the partition. */
  private fenced(partition: number, lease: string): void {
    if (this.reading.get(partition)?.lease !== lease) return;
    // The job stays pending; if we still hold the partition once the coordinator has caught
    // up, it is read again.
    this.log.warn(
      { partition },
      'outbox: the partition lease is not ours; stopped sending its texts',
    );
    this.forget(partition);
    this.paused.set(partition, this.clock.now() + 250);
  }

  /** Twilio has this text already (its sid, or a status callback, is recorded): settle, do not send. */
  private async reconciled(held: Held, sid: string, status: string): Promise<void> {
    if (!(await this.settle(held))) return;
    this.log.info(
      { ...context(held), sid, status },
      'SMS already with Twilio (sent by an earlier attempt); not sent again',
    );
    this.count('reconciled', '', held.job, status === 'failed' ? undefined : 'sent');
  }

  /** An earlier attempt may still be in flight: try again once it must have ended. */
  private async postpone(held: Held, waitMs: number): Promise<void> {
    const at = this.clock.now() + waitMs + 100;
    if (!(await this.settle(held, { at, job: { ...held.job, since: sinceOf(held) } }))) return;
    this.log.info(
      { ...context(held), waitMs },
      'SMS postponed: an earlier attempt (a former owner, or a timeout) may still be in flight',
    );
    this.count('postponed', '', held.job);
  }

  private async failed(held: Held, err: SmsSendError, marker: string): Promise<void> {
    const { job } = held;
    const since = sinceOf(held);
    const { code, attempt, action } = classifyFailure(
      err,
      job,
      Number(since),
      this.clock.now(),
      this.options,
    );
    const ctx = { ...context(held), attempt, code, reach: err.reach };
    switch (action.kind) {
      case 'retry': {
        const { delayMs, throttles } = action;
        if (action.slowDown) this.buckets.hold(job.from, delayMs);
        const retry: OutboxJob = {
          ...job,
          attempt: String(attempt),
          throttled: String(throttles),
          since,
          // An answer means Twilio did not take it; after a timeout nobody knows.
          clean: err.reach === 'ambiguous' ? '' : marker,
        };
        if (!(await this.settle(held, { at: this.clock.now() + delayMs, job: retry }))) return;
        this.log.info({ ...ctx, delayMs, err: err.message }, 'SMS send failed; will retry');
        this.count('retried', code, job);
        return;
      }
      case 'exhausted': {
        const { reason } = action;
        if (!(await this.deadLetter(held, reason, action.detail, code))) return;
        this.log.warn(
          { ...ctx, err: err.message },
          `SMS dead-lettered (${reason}, see thr:dead); check Twilio status and the sending number`,
        );
        this.count('dead', code, job);
        return;
      }
      case 'refused': {
        if (action.mark === 'opted_out')
          await this.members.setOptedOut(`phone:${job.to}`, job.from, true);
        else await this.members.setInvalid(`phone:${job.to}`);
        if (!(await this.settle(held))) return;
        await this.finalStatus(held, 'failed', code);
        this.log.warn({ ...ctx, err: err.message }, 'SMS refused by Twilio; not retried');
        this.count('failed', code, job);
        return;
      }
      case 'rejected': {
        if (!(await this.deadLetter(held, 'sms_rejected', action.detail, code))) return;
        this.log.error(
          { ...ctx, err: err.message },
          `SMS refused by Twilio and dead-lettered (thr:dead, reason sms_rejected): ${action.advice}`,
        );
        this.count('dead', code, job);
        return;
      }
    }
  }

  /**
   * An error that is neither Twilio's nor a fence (a Redis timeout, a malformed job): the entry
   * stays pending and our own pending entries are read again shortly; after sms.maxAttempts
   * such failures (Redis outages not counted) the job is dead-lettered.
   */
  private async unexpected(held: Held, err: unknown): Promise<void> {
    const { partition, entryId } = held;
    if (this.reading.get(partition)?.lease !== held.lease) return; // the next owner has it
    const failures = (this.errors.get(jobKey(held)) ?? 0) + 1;
    const ctx = { ...context(held), entry: entryId, failures };
    if (failures >= this.options.maxAttempts && !isRedisUnavailable(err)) {
      this.errors.delete(jobKey(held));
      const detail = `${failures} unexpected failures: ${(err as Error)?.message ?? String(err)}`;
      // Part of the send (awaited by it), so release() and stop() wait for it too.
      try {
        if (!(await this.deadLetter(held, 'sms_error', detail, 'error'))) return;
      } catch (e) {
        this.log.error({ ...ctx, err: e }, 'could not dead-letter an SMS job; it stays pending');
        this.reread(held, failures);
        return;
      }
      this.log.error(
        { ...ctx, err },
        'SMS dead-lettered after repeated unexpected failures (thr:dead, reason sms_error): inspect the job there, fix the cause, and re-add it to the outbox if it should still go',
      );
      this.count('dead', 'error', held.job);
      return;
    }
    if (this.errors.size > 100_000) this.errors.clear();
    this.errors.set(jobKey(held), failures);
    this.log.warn(
      { ...ctx, err },
      'SMS job failed unexpectedly; it stays pending and is tried again shortly (if this repeats, check Redis and the job in the outbox)',
    );
    this.reread(held, failures);
  }

  /** Reads our pending entries of the job's partition again after a backoff. */
  private reread(held: Held, failures: number): void {
    if (!this.running) return;
    const timer = setTimeout(
      () => {
        this.timers.delete(timer);
        const state = this.reading.get(held.partition);
        if (state?.lease === held.lease) state.cursor = '0';
      },
      backoff(failures, this.options),
    );
    this.timers.add(timer);
  }

  /** Writes the job to thr:dead, then settles it (marking a relay failed); false if fenced. */
  private async deadLetter(held: Held, reason: string, detail: string, code: string) {
    // thr:dead is in no partition's slot, so this check cannot be in settle-job's script; it
    // keeps a sender that lost the lease from dead-lettering a job the next owner will send.
    const lease = await this.waitOut(() => this.redis.get(this.keys.lease(held.partition)));
    if (lease !== held.lease) {
      this.fenced(held.partition, held.lease);
      return false;
    }
    // prettier-ignore
    await this.waitOut(() => this.redis.xadd(
      this.keys.dead, 'MAXLEN', '~', this.options.deadLength, '*',
      'reason', reason, 'detail', detail, 'code', code, 'partition', held.partition,
      'entry', held.entryId, 'job', JSON.stringify(held.job),
    ));
    if (!(await this.settle(held))) return false;
    await this.finalStatus(held, 'failed', code);
    this.metrics.deadLetters.inc({ reason });
    return true;
  }

  /** Runs a Redis command, waiting out an outage while we run. */
  private async waitOut<T>(command: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await command();
      } catch (err) {
        if (!isRedisUnavailable(err) || !this.running) throw err;
        if (attempt === 0) this.log.warn({ err }, 'Redis unavailable in the outbox; retrying');
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  /**
   * Acknowledges (and deletes) the job, scheduling `retry` first; a Redis outage is waited out.
   * False when fenced: the lease is not ours, nothing changed, the next owner has the job.
   */
  private async settle(held: Held, retry?: { at: number; job: OutboxJob }): Promise<boolean> {
    const { partition } = held;
    // prettier-ignore
    const result = await this.waitOut(() => this.redis.settleJob(
      this.keys.lease(partition), this.keys.outbox(partition), this.keys.outboxRetry(partition),
      held.lease, held.entryId, SENDERS_GROUP,
      retry ? retry.at : '', retry ? JSON.stringify(Object.entries(retry.job).flat()) : '',
    ));
    if (result === 1) {
      this.errors.delete(jobKey(held));
      return true;
    }
    this.fenced(held.partition, held.lease);
    return false;
  }

  private async finalStatus(held: Held, status: string, code: string): Promise<void> {
    if (held.job.kind !== 'relay') return;
    await this.waitOut(() =>
      this.redis.recordStatus(
        this.keys.msg(held.partition, held.job.msg),
        held.job.to,
        status,
        code,
      ),
    );
  }

  private count(outcome: Outcome, code: string, job: OutboxJob, delivery: string = outcome): void {
    this.metrics.smsOutbound.inc({ outcome, code });
    const final = ['sent', 'failed', 'dead', 'skipped'];
    if (job.kind === 'relay' && final.includes(delivery))
      this.metrics.deliveries.inc({ channel: 'sms', outcome: delivery });
  }
}

/** A job's identity on this node (see {@link entryKey}). */
function jobKey(held: Pick<Held, 'partition' | 'entryId'>): string {
  return entryKey(held.partition, held.entryId);
}
