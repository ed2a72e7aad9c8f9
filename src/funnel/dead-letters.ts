import { ConflictError, NotFoundError } from '../errors.ts';
import { Code } from '../redis/codes.ts';
import { isCluster, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import { parseEnvelope } from './envelope.ts';

/** One entry of `thr:dead`, as the admin API shows it. */
export interface DeadLetter {
  /** The entry id in `thr:dead`. */
  id: string;
  /** When it was dead-lettered (ms), from the entry id. */
  at: number;
  /** `envelope`: a funnel entry that could not commit; `job`: an outbox job out of attempts. */
  kind: 'envelope' | 'job';
  reason: string;
  detail: string;
  partition: number;
  room?: string;
  /** The envelope id (envelope), or the message's envelope id (job). */
  message?: string;
  body?: string;
  /** Jobs: the channel and the recipient. */
  channel?: string;
  to?: string;
  code?: string;
}

export interface RequeueResult {
  id: string;
  /** Where it went: the room's funnel partition, or the outbox retry set (due now). */
  to: 'funnel' | 'outbox';
  partition: number;
  /** The envelope was committed before: nothing was added, the dead letter is gone. */
  duplicate?: boolean;
}

/** How long one requeue may hold its claim on a dead letter. */
const CLAIM_MS = 30_000;

/**
 * The `thr:dead` stream (DESIGN §3): listing, and putting an entry back where it came from.
 * A requeue adds the copy first and deletes the dead letter after, under a claim key, so a
 * crash in between leaves the letter in place (requeued again, an envelope commits once: its
 * seen marker) and two admins clicking at once requeue it once (the second gets 409, later 404).
 */
export class DeadLetters {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** Newest first; `before` is an entry id (exclusive), the `next` of the previous page. */
  async list(limit: number, before?: string): Promise<{ letters: DeadLetter[]; next?: string }> {
    const end = before ? `(${before}` : '+';
    const entries = await this.redis.xrevrange(this.keys.dead, end, '-', 'COUNT', limit);
    const letters = entries.map(([id, fields]) => describe(id, fieldsOf(fields)));
    const last = letters.at(-1);
    return letters.length === limit && last ? { letters, next: last.id } : { letters };
  }

  async requeue(id: string): Promise<RequeueResult> {
    const claim = this.keys.deadRequeue(id);
    if ((await this.redis.set(claim, '1', 'PX', CLAIM_MS, 'NX')) !== 'OK')
      throw new ConflictError(`dead letter ${id} is being requeued right now`, 'in_progress');
    try {
      const [entry] = await this.redis.xrange(this.keys.dead, id, id);
      if (!entry) throw new NotFoundError(`no dead letter ${id} (requeued or trimmed already?)`);
      const fields = fieldsOf(entry[1]);
      const result =
        fields.job !== undefined
          ? await this.requeueJob(id, fields)
          : await this.requeueEnvelope(id, fields);
      await this.redis.xdel(this.keys.dead, id);
      return result;
    } finally {
      await this.redis.del(claim);
    }
  }

  /** Back into the funnel through the ingress script: the room must exist again. */
  private async requeueEnvelope(id: string, f: Record<string, string>): Promise<RequeueResult> {
    let room: string;
    let envelopeId: string;
    try {
      ({ room, id: envelopeId } = parseEnvelope(f.e ?? ''));
    } catch (err) {
      throw new ConflictError(
        `dead letter ${id} holds no valid envelope (${(err as Error).message}); requeued it would be dead-lettered again`,
        'invalid_envelope',
      );
    }
    const { keys } = this;
    const p = keys.partitionOf(room);
    // prettier-ignore
    const reply = await this.redis.publishEnvelope(
      keys.room(room), keys.members(room), keys.funnel(p), keys.seen(p, envelopeId),
      '', f.e ?? '', 0, 0, 0, 0, isCluster(this.redis) ? 1 : 0,
    );
    if (reply === Code.NO_ROOM)
      throw new ConflictError(
        `room ${room} does not exist: create it, then requeue the message`,
        'no_room',
      );
    if (typeof reply === 'number') throw new ConflictError(`the funnel refused it (code ${reply})`);
    return { id, to: 'funnel', partition: p, ...(Array.isArray(reply) ? { duplicate: true } : {}) };
  }

  /**
   * Into the partition's retry set, due now, with fresh attempts: the runner promotes it into
   * the outbox. A relay's recipient, marked failed when the job died, is marked queued again
   * (in the same slot, one MULTI) unless the receiver has it (a reference).
   */
  private async requeueJob(id: string, f: Record<string, string>): Promise<RequeueResult> {
    const p = Number(f.partition);
    const job = JSON.parse(f.job ?? '{}') as Record<string, string>;
    const now = Date.now();
    const fresh = { ...job, attempt: '0', throttled: '', since: String(now), clean: '', slot: '' };
    const tx = this.redis.multi();
    if (job.kind === 'relay' && job.ch && job.to && job.msg) {
      const msg = this.keys.msg(p, job.msg);
      const field = `${job.ch}:${job.to}`;
      const [state, ref] = await this.redis.hmget(msg, field, `${field}:ref`);
      if (ref) throw new ConflictError(`the receiver has this delivery already (${ref})`, 'sent');
      if (state === 'failed' || state === 'expired')
        tx.hset(msg, field, 'queued')
          .hincrby(msg, `${job.ch}:${state}`, -1)
          .hincrby(msg, `${job.ch}:queued`, 1);
    }
    tx.zadd(this.keys.outboxRetry(p), now, JSON.stringify(Object.entries(fresh).flat()));
    await tx.exec();
    return { id, to: 'outbox', partition: p };
  }
}

function fieldsOf(flat: string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
  return fields;
}

function describe(id: string, f: Record<string, string>): DeadLetter {
  const base = {
    id,
    at: Number(id.split('-')[0]),
    reason: f.reason ?? '',
    detail: f.detail ?? '',
    partition: Number(f.partition ?? -1),
  };
  if (f.job !== undefined) {
    const job = safeJson(f.job);
    const frame = safeJson(job.m);
    return {
      ...base,
      kind: 'job',
      ...pick({ room: job.room, message: job.msg, channel: f.channel ?? job.ch, to: job.to }),
      ...pick({ code: f.code, body: frame.body }),
    };
  }
  const env = safeJson(f.e);
  return {
    ...base,
    kind: 'envelope',
    ...pick({ room: env.room, message: env.id, body: env.body }),
  };
}

function safeJson(text: unknown): Record<string, unknown> {
  try {
    const value: unknown = typeof text === 'string' ? JSON.parse(text) : undefined;
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The fields that are non-empty strings. */
function pick<T extends Record<string, unknown>>(o: T): Partial<Record<keyof T, string>> {
  return Object.fromEntries(
    Object.entries(o).filter(([, v]) => typeof v === 'string' && v !== ''),
  ) as Partial<Record<keyof T, string>>;
}
