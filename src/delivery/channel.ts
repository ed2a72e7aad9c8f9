import type { Sender } from '../funnel/envelope.ts';
import type { Logger } from '../log.ts';

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
