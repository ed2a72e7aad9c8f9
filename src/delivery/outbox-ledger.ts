import { setTimeout as sleep } from 'node:timers/promises';
import { batch, isCluster, type RedisClient } from '../redis/client.ts';
import { isRedisUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import { type Held, type OutboxJob, retrySince, SENDERS_GROUP } from './outbox-job.ts';

/** What begin-send-2.lua says about one attempt. */
export type Begin =
  | { go: 'fenced' }
  | { go: 'send'; marker: string; ambiguous?: { earlier: string } }
  | { go: 'already'; ref: string; status: string }
  | { go: 'later'; waitMs: number };

/**
 * The outbox's writes to Redis, each fenced by the partition's lease (DESIGN §4): the send
 * marker before a request, recipient states and references after it, and settling a job
 * (acknowledged, rescheduled or dead-lettered). A Redis outage is waited out while we run.
 */
export class OutboxLedger {
  running = true;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: {
      /** How long one attempt may be in flight (younger markers postpone a send). */
      inFlightMs: (channel: string) => number;
      markerTtlMs: number;
      deadLength: number;
    },
    private readonly log: Logger,
  ) {}

  /** The hash and field prefix of a job's send marker and reference (see begin-send-2.lua). */
  delivery(held: Held): { key: string; prefix: string } {
    const { job, partition } = held;
    if (job.kind === 'reply')
      return { key: this.keys.reply(partition, job.msg), prefix: `reply:${job.to}` };
    const who = job.kind === 'relay' ? job.ch : job.kind;
    return { key: this.keys.msg(partition, job.msg), prefix: `${who}:${job.to}` };
  }

  /** The fence, and the last await before a request: nothing may come between them. */
  async begin(held: Held, now: number): Promise<Begin> {
    const { key, prefix } = this.delivery(held);
    // prettier-ignore
    const [code, a = '', b = ''] = await this.redis.beginSend(
      this.keys.lease(held.partition), key, held.lease, prefix, now, held.job.clean ?? '',
      this.options.inFlightMs(held.job.ch), this.options.markerTtlMs,
    );
    if (code === Code.FENCED) return { go: 'fenced' };
    if (code === Code.ALREADY) return { go: 'already', ref: String(a), status: String(b) };
    if (code === Code.IN_FLIGHT) return { go: 'later', waitMs: Number(a) };
    if (code === Code.AMBIGUOUS)
      return { go: 'send', marker: String(a), ambiguous: { earlier: String(b) } };
    return { go: 'send', marker: String(a) };
  }

  /**
   * After a send: a relay's recipient moves to `status` (never backwards), and the receiver's
   * reference (an SMS sid) is kept, so a later owner never sends it again. Unfenced: should
   * the lease be gone, the next owner must see it.
   */
  async sent(held: Held, status: 'sent' | 'delivered', ref = ''): Promise<void> {
    const { job } = held;
    const { key, prefix } = this.delivery(held);
    await this.waitOut(() =>
      job.kind === 'relay'
        ? this.redis.recordStatus(key, job.ch, job.to, status, '', ref)
        : this.redis.recordRef(key, prefix, ref || status),
    );
  }

  /** A relay's recipient failed for good (`code` says why), or expired unsent. */
  async failed(held: Held, code: string, state: 'failed' | 'expired' = 'failed'): Promise<void> {
    const { job } = held;
    if (job.kind !== 'relay') return;
    const key = this.keys.msg(held.partition, job.msg);
    await this.waitOut(() => this.redis.recordStatus(key, job.ch, job.to, state, code));
  }

  /** Settles a job whose time ran out unsent (a relay's recipient: expired); false if fenced. */
  async expire(held: Held): Promise<boolean> {
    if (!(await this.settle(held))) return false;
    await this.failed(held, '', 'expired');
    return true;
  }

  /**
   * Acknowledges (and deletes) the job, scheduling `retry` first. False when fenced: the
   * lease is not ours, nothing changed, the next owner has the job.
   */
  async settle(held: Held, retry?: { at: number; job: OutboxJob }): Promise<boolean> {
    const { partition } = held;
    // prettier-ignore
    const result = await this.waitOut(() => this.redis.settleJob(
      this.keys.lease(partition), this.keys.outbox(partition), this.keys.outboxRetry(partition),
      held.lease, held.entryId, SENDERS_GROUP,
      retry ? retry.at : '', retry ? JSON.stringify(Object.entries(retry.job).flat()) : '',
    ));
    return result === Code.OK;
  }

  /** Writes the job to thr:dead, then settles it (a relay's recipient failed); false if fenced. */
  async deadLetter(held: Held, reason: string, detail: string, code: string): Promise<boolean> {
    // thr:dead is in no partition's slot, so this check cannot be in settle-job's script; it
    // keeps a runner that lost the lease from dead-lettering a job the next owner will send.
    const lease = await this.waitOut(() => this.redis.get(this.keys.lease(held.partition)));
    if (lease !== held.lease) return false;
    // prettier-ignore
    await this.waitOut(() => this.redis.xadd(
      this.keys.dead, 'MAXLEN', '~', this.options.deadLength, '*',
      'reason', reason, 'detail', detail, 'code', code, 'channel', held.job.ch,
      'partition', held.partition, 'entry', held.entryId, 'job', JSON.stringify(held.job),
    ));
    if (!(await this.settle(held))) return false;
    await this.failed(held, code);
    return true;
  }

  /** Moves retries that are due back into the outbox streams of these partitions. */
  async promote(partitions: number[], now: number): Promise<void> {
    if (partitions.length === 0) return;
    const pipe = batch(this.redis);
    for (const p of partitions)
      // prettier-ignore
      pipe.promoteRetries(this.keys.outboxRetry(p), this.keys.outbox(p), now, 1000, isCluster(this.redis) ? 1 : 0);
    await pipe.exec();
  }

  /**
   * The outbox gauges of these partitions (the ones we hold): jobs in each outbox (stream plus
   * retry set) and the age of the oldest (a job in the retry set counts from its `since`; of
   * the retry set, the job due first is looked at).
   */
  async gauge(
    partitions: number[],
    now: number,
    metrics: Pick<Metrics, 'outboxDepth' | 'outboxOldest'>,
  ): Promise<void> {
    metrics.outboxDepth.reset();
    metrics.outboxOldest.reset();
    if (partitions.length === 0) return;
    const pipe = batch(this.redis);
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
      const times: number[] = [];
      const head = first?.[0]?.[0];
      if (head) times.push(Number.parseInt(head, 10));
      const since = due?.[0] ? retrySince(due[0]) : undefined;
      if (since !== undefined) times.push(since);
      const label = { partition: String(p) };
      metrics.outboxDepth.set(label, (len ?? 0) + (retries ?? 0));
      const oldest = times.length > 0 ? Math.min(...times) : now;
      metrics.outboxOldest.set(label, Math.max(0, now - oldest) / 1000);
    });
  }

  /** Runs a Redis command, waiting out an outage while we run. */
  async waitOut<T>(command: () => Promise<T>): Promise<T> {
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
}

/** Creates the `senders` group on every partition's outbox (idempotent). */
export async function prepareOutbox(redis: RedisClient, keys: Keys): Promise<void> {
  const pipe = batch(redis);
  for (let p = 0; p < keys.partitions; p++)
    pipe.xgroup('CREATE', keys.outbox(p), SENDERS_GROUP, '0', 'MKSTREAM');
  for (const [err] of (await pipe.exec()) ?? []) {
    if (err && !String(err.message).includes('BUSYGROUP')) throw err;
  }
}
