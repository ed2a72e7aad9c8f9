import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.ts';

/** The consumer group of every partition's outbox. */
export const SENDERS_GROUP = 'senders';

/** One outbox entry (fields written by commit-message-9.lua or by a keyword reply). */
export interface OutboxJob {
  /** relay (a member's message), receipt (the sender's confirmation), reply (to a keyword) */
  kind: 'relay' | 'receipt' | 'reply';
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
  /** Attempts that failed (5xx, network, timeouts); 429s are counted in `throttled`. */
  attempt: string;
  /** 429s so far (their backoff grows with it), "" for none. */
  throttled?: string;
  /** When the job first entered the outbox (ms), for the retry time budget; "" = its entry id. */
  since?: string;
  /** Marker of the attempt known not to have reached Twilio (see begin-send-2.lua), or "". */
  clean?: string;
  /** The time slot (ms) a parked job was given behind its number's backlog, or "". */
  slot?: string;
}

/** A job read by this node, with what fences its writes. */
export interface Held {
  partition: number;
  /** Our lease value when the job was read: every write for it is fenced by this one. */
  lease: string;
  entryId: string;
  job: OutboxJob;
}

/** What logs may say about a job: never its body (texts are private). */
export function context(held: Held) {
  const { job } = held;
  return {
    partition: held.partition,
    kind: job.kind,
    to: job.to,
    from: job.from,
    room: job.room,
    msg: job.msg,
  };
}

/** When the job first entered the outbox: its `since`, else its entry id's time. */
export function sinceOf(held: Held): string {
  return held.job.since || String(Number.parseInt(held.entryId, 10));
}

/** The `since` of a job in the retry set (its JSON array of fields). */
export function retrySince(member: string): number | undefined {
  try {
    const fields = JSON.parse(member) as string[];
    const i = fields.indexOf('since');
    const v = i >= 0 && i % 2 === 0 ? Number(fields[i + 1]) : Number.NaN;
    return Number.isFinite(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The media URLs of a job (its `media` field, a JSON array). */
export function parseMedia(media: string): string[] {
  const urls = JSON.parse(media) as unknown;
  if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string'))
    throw new Error('job field media: not a JSON array of URLs');
  return urls;
}

/** An outbox entry's fields as a job, with the defaults of fields it lacks. */
export function toJob(fields: string[]): OutboxJob {
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
    throttled: '',
    since: '',
    clean: '',
    slot: '',
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
