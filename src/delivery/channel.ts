import type { Sender } from '../funnel/envelope.ts';
import type { Logger } from '../log.ts';
import type { RetryPolicy } from './retry-policy.ts';

/**
 * A delivery channel (DESIGN §7): it owns a member-id prefix (`phone` → `phone:+1555…`,
 * `webhook` → `webhook:billing`) and sends one committed message to one such member. The
 * outbox runner does everything else: lease fencing before each send, retries with backoff,
 * dead letters, per-recipient states and metrics.
 *
 * A plug-in module's default export is a {@link ChannelFactory}.
 */
export interface DeliveryChannel {
  /** The member-id prefix this channel delivers to, without the colon (`"pager"`). */
  prefix: string;
  send(job: ChannelJob): Promise<SendResult>;
  /** Called once when the node stops. */
  stop?(): void | Promise<void>;
}

/** The committed message a job delivers (the fields of its WebSocket `message` frame). */
export interface ChannelMessage {
  /** Envelope id. */
  id: string;
  seq: number;
  body: string;
  media?: string[];
  sender: Sender;
  kind: 'chat' | 'notification';
  /** Commit time, ms since epoch. */
  ts: number;
}

/** One message to one member over one channel. */
export interface ChannelJob {
  /** Stable across retries and owners: the receiver's deduplication key. */
  deliveryId: string;
  channel: string;
  member: string;
  room: string;
  /** Earlier attempts of this delivery that failed (0 on the first). */
  attempt: number;
  message: ChannelMessage;
}

export type SendStatus = 'sent' | 'delivered' | 'retry' | 'failed';

export interface SendResult {
  /**
   * `sent`: handed over (a later report may move it to delivered); `delivered`: the receiver
   * has it; `retry`: try again later (backoff, or `retryAfterMs`); `failed`: give up on this
   * recipient.
   */
  status: SendStatus;
  /** With `retry`: wait at least this long (the receiver's `Retry-After`). */
  retryAfterMs?: number;
  /** Why it failed or is retried: logged, recorded with the recipient, and dead-lettered. */
  error?: string;
}

/** What a channel plug-in is built with. */
export interface ChannelContext {
  /** The channel's name in the config (`channels[].name`). */
  name: string;
  /** Its `channels[].options`, as written. */
  options: Record<string, unknown>;
  log: Logger;
  /** Aborted when the node stops. */
  signal: AbortSignal;
}

export type ChannelFactory = (ctx: ChannelContext) => DeliveryChannel | Promise<DeliveryChannel>;

/**
 * What a built-in channel may say beyond {@link SendResult} (a plug-in may use it too). The
 * runner reads each field only where it says.
 */
export interface SendOutcome extends SendResult {
  /** The receiver's id for what it accepted (an SMS sid): a later owner never resends it. */
  ref?: string;
  /** Error code for metrics and the recipient's record (a Twilio code, an HTTP status). */
  code?: string;
  /** With `retry`: the receiver said "too fast": no attempt is counted, the lane slows down. */
  throttled?: boolean;
  /** With `retry`: slow the whole lane down for the delay (not only this job). */
  slowDown?: boolean;
  /** With `retry`: the attempt may have reached the receiver (a timeout, a reset). */
  ambiguous?: boolean;
  /** With `failed`: someone must act; the job goes to thr:dead with this reason. */
  deadLetter?: string;
  /** With `failed`: counted under this outcome (`skipped`: not attempted at all). */
  outcome?: 'skipped';
}

/** The runner's view of a channel: a plug-in or a built-in, with how its jobs are scheduled. */
export interface RunnerChannel {
  name: string;
  prefix: string;
  /**
   * false: the commit never routes members to it by their prefix (the push channel's is
   * `user`, the live path's); only jobs that name it (`ch`) reach it. Default true.
   */
  routed?: boolean;
  send(
    job: ChannelJob & { fields: Readonly<Record<string, string | undefined>> },
  ): Promise<SendOutcome>;
  stop?(): void | Promise<void>;
  /**
   * Jobs of one lane share a rate and a queue (default: one lane per member, so a member's
   * messages go out in order). SMS: one per sending number.
   */
  lane?(job: Readonly<Record<string, string | undefined>>): string;
  /** Sends per second and burst per lane (default: no limit). */
  rate?: { perSecond: number; burst: number };
  /**
   * A job answered `retry` holds its lane until it is sent, so the lane keeps its order
   * (default). Unordered lanes (SMS) reschedule it and send the others meanwhile.
   */
  ordered?: boolean;
  /** Sends of the channel in flight at once. */
  maxInFlight: number;
  /** Jobs held in memory per lane; more wait in the retry set. */
  maxQueuedPerLane: number;
  /** How long one send may take: an attempt younger than this may still be in flight. */
  sendTimeoutMs: number;
  retry: RetryPolicy;
}
