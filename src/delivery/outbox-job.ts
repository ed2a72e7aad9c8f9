import type { Sender } from '../funnel/envelope.ts';
import type { ChannelJob, ChannelMessage } from './channel.ts';

/** The consumer group of every partition's outbox. */
export const SENDERS_GROUP = 'senders';

/**
 * One outbox entry: written by commit-batch-n.lua (one per out-of-band recipient, plus a
 * channel's extra jobs) or by a keyword reply; fields a channel's planner added ride along.
 */
export interface OutboxJob {
  /** The channel's name. */
  ch: string;
  /** relay (a member's copy of a message), or a channel's own (receipt, reply). */
  kind: string;
  /** Delivery id `<room>~<member>~<envelope id>` of a relay, else "". */
  d: string;
  /** Member id of the recipient (`phone:+1555…`, `webhook:billing`). */
  to: string;
  room: string;
  /** Envelope id of the message (relay, receipt) or the inbound MessageSid (reply). */
  msg: string;
  /** Attempts that failed; throttled ones are counted in `throttled`. */
  attempt: string;
  /** The message frame (JSON), "" for a job that carries no message (a keyword reply). */
  m: string;
  /** Throttled answers so far (their backoff grows with it), "" for none. */
  throttled?: string;
  /** When the job first entered the outbox (ms), for the retry time budget; "" = its entry id. */
  since?: string;
  /** Marker of the attempt known not to have reached the receiver (begin-send-2.lua), or "". */
  clean?: string;
  /** The time slot (ms) a parked job was given behind its lane's backlog, or "". */
  slot?: string;
  /** Fields of the channel's plan (SMS: from, body, media). */
  [field: string]: string | undefined;
}

/** A job read by this node, with what fences its writes. */
export interface Held {
  partition: number;
  /** Our lease value when the job was read: every write for it is fenced by this one. */
  lease: string;
  entryId: string;
  job: OutboxJob;
}

/** What logs may say about a job: never its body (messages are private). */
export function context(held: Held) {
  const { job } = held;
  return {
    partition: held.partition,
    channel: job.ch,
    kind: job.kind,
    to: job.to,
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

/** The media URLs of a job (a `media` field, a JSON array). */
export function parseMedia(media: string): string[] {
  const urls = JSON.parse(media) as unknown;
  if (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string'))
    throw new Error('job field media: not a JSON array of URLs');
  return urls;
}

/** An outbox entry's fields as a job, with the defaults of fields it lacks. */
export function toJob(fields: string[]): OutboxJob {
  const job: OutboxJob = {
    ch: '',
    kind: 'relay',
    d: '',
    to: '',
    room: '',
    msg: '',
    attempt: '0',
    m: '',
  };
  for (let i = 0; i + 1 < fields.length; i += 2) job[fields[i] as string] = fields[i + 1] as string;
  return job;
}

interface MessageFrame {
  id: string;
  seq: number;
  body: string;
  media?: string[];
  sender: Sender;
  kind?: 'chat' | 'notification';
  ts: number;
}

/** What a channel is given: the job's message (from its frame) and its own fields. */
export function channelJob(job: OutboxJob): ChannelJob & { fields: Readonly<OutboxJob> } {
  let message: ChannelMessage;
  if (job.m) {
    const f = JSON.parse(job.m) as MessageFrame;
    message = {
      id: f.id,
      seq: f.seq,
      body: f.body,
      sender: f.sender,
      kind: f.kind ?? 'chat',
      ts: f.ts,
    };
    if (f.media) message.media = f.media;
  } else {
    const sender: Sender = { kind: 'service', id: job.room };
    message = { id: job.msg, seq: 0, body: job.body ?? '', sender, kind: 'notification', ts: 0 };
  }
  return {
    deliveryId: job.d || `${job.kind}~${job.to}~${job.msg}`,
    channel: job.ch,
    member: job.to,
    room: job.room,
    attempt: Number(job.attempt) || 0,
    message,
    fields: job,
  };
}
