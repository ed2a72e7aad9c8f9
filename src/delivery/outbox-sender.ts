import type { Redis } from 'ioredis';
import { SmsSendError, isRedisUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';
import type { MemberSettingsStore } from './member-settings.ts';
import type { SmsClient } from './sms-client.ts';
import { type Clock, TokenBuckets } from './token-bucket.ts';

export const SENDERS_GROUP = 'senders';

/** Twilio: "Attempt to send to unsubscribed recipient" (the member texted STOP). */
export const TWILIO_UNSUBSCRIBED = 21610;
/** Twilio: "The 'To' number is not a valid phone number." */
export const TWILIO_INVALID_NUMBER = 21211;

export interface OutboxSenderOptions {
  nodeId: string;
  /** Texts per second per sending number. @default 1 */
  ratePerSecond: number;
  /** Texts a number may send at once after a quiet spell. @default 1 */
  burst: number;
  /** Attempts before a text is dead-lettered. @default 6 */
  maxAttempts: number;
  /** First retry delay; doubles each attempt, with jitter. @default 2000 */
  backoffBaseMs: number;
  /** Longest retry delay. @default 300000 */
  backoffMaxMs: number;
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
}

/** One outbox entry (fields written by commit-message-9.lua or by a keyword reply). */
export interface OutboxJob {
  /** relay (a member's message), receipt (the sender's confirmation), reply (to a keyword) */
  kind: string;
  /** Delivery id `<room>~<E.164>~<envelope id>` of a relay, else "". */
  d: string;
  to: string;
  from: string;
  body: string;
  /** JSON array of media URLs, or "". */
  media: string;
  room: string;
  /** Envelope id of the message (relay, receipt) or the inbound MessageSid (reply). */
  msg: string;
  attempt: string;
}

interface Held {
  partition: number;
  entryId: string;
  job: OutboxJob;
}

type Outcome = 'sent' | 'retried' | 'failed' | 'dead' | 'skipped';

/**
 * Sends the SMS jobs of the partitions this node holds (DESIGN §1, §4), away from the
 * partition consumer: one blocking read over their outboxes, a token bucket per sending
 * number, a bound on requests in flight, retries scheduled durably in the partition's retry
 * set. Every Twilio call and every acknowledgement is fenced by the partition's lease.
 */
export class OutboxSender {
  private readonly buckets: TokenBuckets;
  private readonly queues = new Map<string, Held[]>();
  private readonly inMemory = new Set<string>();
  /**
   * Partitions we read. The cursor walks our own pending entries (ids after it) before new
   * ones ('>'): after a takeover or a restart, jobs read earlier are sent first.
   */
  private readonly reading = new Map<number, { lease: string; cursor: string }>();
  private inFlight = 0;
  private readonly sends = new Set<Promise<void>>();
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private pumpTimer: NodeJS.Timeout | undefined;
  private lastGauges = 0;
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
  }

  private get queued(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  start(): void {
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Stops reading and waits for texts in flight; jobs not started stay pending for the next owner. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.pumpTimer);
    await this.loopDone;
    await Promise.allSettled([...this.sends]);
    this.queues.clear();
    this.inMemory.clear();
    this.reading.clear();
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
      this.reading.delete(p);
      this.drop(p);
      this.metrics.outboxDepth.remove({ partition: String(p) });
      this.metrics.outboxOldest.remove({ partition: String(p) });
    }
    const now = this.clock.now();
    for (const [p, lease] of held) {
      if (this.reading.has(p) || (this.paused.get(p) ?? 0) > now) continue;
      this.paused.delete(p);
      const key = this.keys.outbox(p);
      let cursor = '0-0';
      do {
        // prettier-ignore
        const reply = (await this.redis.xautoclaim(
          key, SENDERS_GROUP, this.options.nodeId, 0, cursor, 'COUNT', 1000, 'JUSTID',
        )) as [string, ...unknown[]];
        cursor = reply[0];
      } while (cursor !== '0-0');
      this.reading.set(p, { lease, cursor: '0' });
    }
  }

  /** Jobs of a partition we no longer hold: its new owner claims them. */
  private drop(partition: number): void {
    for (const [number, queue] of this.queues) {
      const kept = queue.filter((h) => h.partition !== partition);
      for (const h of queue) if (h.partition === partition) this.inMemory.delete(h.entryId);
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

  /** Outbox depth (stream plus retry set) and the age of the oldest job, about once a second. */
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
        .xrange(this.keys.outbox(p), '-', '+', 'COUNT', 1);
    const replies = (await pipe.exec()) ?? [];
    partitions.forEach((p, i) => {
      const [len, retries, first] = replies.slice(i * 3, i * 3 + 3).map(([, v]) => v) as [
        number,
        number,
        [string, string[]][],
      ];
      const label = { partition: String(p) };
      this.metrics.outboxDepth.set(label, (len ?? 0) + (retries ?? 0));
      const oldest = first?.[0]?.[0];
      this.metrics.outboxOldest.set(
        label,
        oldest ? Math.max(0, now - Number.parseInt(oldest, 10)) / 1000 : 0,
      );
    });
  }

  private async read(): Promise<void> {
    const room = Math.max(this.options.readBatch, this.options.maxInFlight) * 2 - this.queued;
    if (this.reading.size === 0 || room <= 0) {
      await sleep(Math.min(this.options.blockMs, 100));
      return;
    }
    const partitions = [...this.reading.keys()];
    const rereading = partitions.some((p) => this.reading.get(p)?.cursor !== '>');
    const args: (string | number)[] = ['GROUP', SENDERS_GROUP, this.options.nodeId];
    args.push('COUNT', Math.min(room, this.options.readBatch));
    if (!rereading) args.push('BLOCK', this.options.blockMs);
    args.push('STREAMS', ...partitions.map((p) => this.keys.outbox(p)));
    args.push(...partitions.map((p) => this.reading.get(p)?.cursor ?? '>'));
    const reply = (await this.reader.call('XREADGROUP', ...args)) as
      [string, [string, string[] | null][]][] | null;
    const got = new Map((reply ?? []).map(([stream, entries]) => [stream, entries]));
    for (const p of partitions) {
      const state = this.reading.get(p);
      const entries = got.get(this.keys.outbox(p)) ?? [];
      if (state && state.cursor !== '>')
        state.cursor = entries.length === 0 ? '>' : (entries[entries.length - 1]?.[0] ?? '>');
      for (const [entryId, fields] of entries) {
        if (this.inMemory.has(entryId)) continue;
        if (fields === null) {
          // Deleted while pending (settled by an earlier owner): nothing to send.
          await this.redis.xack(this.keys.outbox(p), SENDERS_GROUP, entryId);
          continue;
        }
        await this.enqueue({ partition: p, entryId, job: toJob(fields) });
      }
    }
    this.pump();
  }

  private async enqueue(held: Held): Promise<void> {
    const queue = this.queues.get(held.job.from) ?? [];
    if (queue.length >= this.options.maxQueuedPerNumber) {
      // This number has a backlog: park the job in the retry set for about as long as the
      // backlog takes, so other numbers' texts are not stuck behind it in memory.
      const waitMs = Math.ceil((queue.length / this.options.ratePerSecond) * 1000);
      await this.settle(held, { at: this.clock.now() + waitMs, job: held.job });
      return;
    }
    queue.push(held);
    this.queues.set(held.job.from, queue);
    this.inMemory.add(held.entryId);
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
          .catch((err: unknown) => this.log.error({ err, job: held.job }, 'outbox job failed'))
          .finally(() => {
            this.inFlight--;
            this.inMemory.delete(held.entryId);
            this.sends.delete(send);
            this.pump();
          });
        this.sends.add(send);
      }
      if (queue.length === 0) this.queues.delete(number);
    }
    if (wait !== Infinity) this.pumpTimer = setTimeout(() => this.pump(), wait);
    this.buckets.prune();
  }

  private async send(held: Held): Promise<void> {
    const { job, partition } = held;
    const lease = this.reading.get(partition)?.lease;
    if (!lease) return;
    if ((await this.redis.get(this.keys.lease(partition))) !== lease) {
      // Not ours any more (or not yet ours again): stop reading it. The job stays pending; if
      // we still hold the partition once the coordinator has caught up, it is read again.
      this.log.warn(
        { partition },
        'outbox: the partition lease is not ours; stopped sending its texts',
      );
      this.reading.delete(partition);
      this.drop(partition);
      this.paused.set(partition, this.clock.now() + 250);
      return;
    }

    if (job.kind !== 'reply') {
      const member = await this.members.get(`phone:${job.to}`);
      if (member.optedOut || member.invalid) {
        const code = member.optedOut ? 'opted_out' : 'invalid';
        await this.settle(held);
        await this.finalStatus(held, 'failed', code);
        this.count('skipped', code, job);
        return;
      }
    }

    const d = job.kind === 'relay' && this.options.publicUrl ? job.d : '';
    try {
      const { sid } = await this.client.send({
        to: job.to,
        from: job.from,
        body: job.body,
        ...(job.media ? { mediaUrl: JSON.parse(job.media) as string[] } : {}),
        ...(d
          ? {
              statusCallback: `${this.options.publicUrl.replace(/\/+$/, '')}/twilio/status?d=${encodeURIComponent(d)}`,
            }
          : {}),
      });
      await this.settle(held);
      if (job.kind === 'relay') await this.redis.hset(this.msgKey(held), `sms:${job.to}:sid`, sid);
      this.metrics.smsSent.inc({ number: job.from });
      this.count('sent', '', job);
    } catch (err) {
      if (!(err instanceof SmsSendError)) throw err;
      await this.failed(held, err);
    }
  }

  private async failed(held: Held, err: SmsSendError): Promise<void> {
    const { job } = held;
    const code = String(err.twilioCode ?? err.httpStatus ?? 'network');
    const retryable =
      err.httpStatus === undefined || err.httpStatus === 429 || err.httpStatus >= 500;
    const attempt = Number(job.attempt) + 1;
    const context = { to: job.to, from: job.from, room: job.room, msg: job.msg, attempt, code };

    if (retryable && attempt < this.options.maxAttempts) {
      const backoff = Math.min(
        this.options.backoffMaxMs,
        this.options.backoffBaseMs * 2 ** (attempt - 1),
      );
      const delay = Math.round(backoff * (0.5 + Math.random() / 2));
      await this.settle(held, {
        at: this.clock.now() + delay,
        job: { ...job, attempt: String(attempt) },
      });
      this.log.info(
        { ...context, delayMs: delay, err: err.message },
        'SMS send failed; will retry',
      );
      this.count('retried', code, job);
      return;
    }
    if (retryable) {
      // prettier-ignore
      await this.redis.xadd(
        this.keys.dead, 'MAXLEN', '~', this.options.deadLength, '*',
        'reason', 'sms_attempts', 'detail', `${attempt} attempts: ${err.message}`,
        'partition', held.partition, 'entry', held.entryId, 'job', JSON.stringify(job),
      );
      await this.settle(held);
      await this.finalStatus(held, 'failed', code);
      this.metrics.deadLetters.inc({ reason: 'sms_attempts' });
      this.log.warn(
        { ...context, err: err.message },
        'SMS dead-lettered after its last attempt (see thr:dead); check Twilio status and the sending number',
      );
      this.count('dead', code, job);
      return;
    }
    if (err.twilioCode === TWILIO_UNSUBSCRIBED)
      await this.members.setOptedOut(`phone:${job.to}`, true);
    if (err.twilioCode === TWILIO_INVALID_NUMBER) await this.members.setInvalid(`phone:${job.to}`);
    await this.settle(held);
    await this.finalStatus(held, 'failed', code);
    this.log.warn({ ...context, err: err.message }, 'SMS refused by Twilio; not retried');
    this.count('failed', code, job);
  }

  /** Acknowledges (and deletes) the job, scheduling `retry` first; a Redis outage is waited out. */
  private async settle(held: Held, retry?: { at: number; job: OutboxJob }): Promise<void> {
    const { partition } = held;
    for (let attempt = 0; ; attempt++) {
      const lease = this.reading.get(partition)?.lease;
      if (!lease) return;
      try {
        // prettier-ignore
        await this.redis.settleJob(
          this.keys.lease(partition), this.keys.outbox(partition), this.keys.outboxRetry(partition),
          lease, held.entryId, SENDERS_GROUP,
          retry ? retry.at : '', retry ? JSON.stringify(Object.entries(retry.job).flat()) : '',
        );
        return;
      } catch (err) {
        if (!isRedisUnavailable(err) || !this.running) throw err;
        if (attempt === 0) this.log.warn({ err }, 'could not settle an outbox job; retrying');
        await sleep(Math.min(2000, 100 * 2 ** attempt));
      }
    }
  }

  private msgKey(held: Held): string {
    return this.keys.msg(held.partition, held.job.msg);
  }

  private async finalStatus(held: Held, status: string, code: string): Promise<void> {
    if (held.job.kind !== 'relay') return;
    await this.redis.recordStatus(this.msgKey(held), held.job.to, status, code);
  }

  private count(outcome: Outcome, code: string, job: OutboxJob): void {
    this.metrics.smsOutbound.inc({ outcome, code });
    if (job.kind === 'relay' && outcome !== 'retried')
      this.metrics.deliveries.inc({ channel: 'sms', outcome });
  }
}

function toJob(fields: string[]): OutboxJob {
  const job: Record<string, string> = {
    kind: 'relay',
    d: '',
    to: '',
    from: '',
    body: '',
    media: '',
    room: '',
    msg: '',
    attempt: '0',
  };
  for (let i = 0; i + 1 < fields.length; i += 2) job[fields[i] as string] = fields[i + 1] as string;
  return job as unknown as OutboxJob;
}

/** Creates the `senders` group on every partition's outbox (idempotent). */
export async function prepareOutbox(redis: Redis, keys: Keys): Promise<void> {
  const pipe = redis.pipeline();
  for (let p = 0; p < keys.partitions; p++)
    pipe.xgroup('CREATE', keys.outbox(p), SENDERS_GROUP, '0', 'MKSTREAM');
  for (const [err] of (await pipe.exec()) ?? []) {
    if (err && !String(err.message).includes('BUSYGROUP')) throw err;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
