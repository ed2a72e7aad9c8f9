import { newUlid } from '../ids.ts';
import { ThresholdError, TimeoutError } from '../errors.ts';
import { ENVELOPE_VERSION, type Envelope, type Sender } from '../funnel/envelope.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Published, Publisher } from './publisher.ts';
import type { PublishRateLimiter } from './rate-limit.ts';

export interface IngressOptions {
  nodeId: string;
  /** How long a caller that waits for its receipt (`?wait=1`, WebSocket ack) waits. */
  receiptTimeoutMs: number;
}

export interface Submission {
  room: string;
  source: string;
  sender: Sender;
  kind: Envelope['kind'];
  body: string;
  media?: string[] | undefined;
  /** The client's own id for the message (Idempotency-Key, WS frame id): retries commit once. */
  clientKey?: string | undefined;
  /** The WebSocket connection that sent it, so its ack finds the way back. */
  conn?: string | undefined;
  /** The whole envelope id, for sources whose messages carry a global one (`twilio:<MessageSid>`). */
  id?: string | undefined;
  /** SMS: the room number the text came in on. */
  via?: string | undefined;
  /**
   * The client whose publish rate this counts against (a member id); undefined for
   * unlimited senders (the admin token's services, Twilio's webhooks).
   */
  rateLimited?: string | undefined;
}

/** What the owner of a room reported for a message (the delivery layer's Receipt, as ingress reads it). */
export interface Outcome {
  status: 'committed' | 'duplicate' | 'rejected';
  seq?: number | undefined;
  code?: string | undefined;
  message?: string | undefined;
}

/** A receipt being waited for. */
export interface PendingReceipt {
  /** Rejects with the waiter's `onTimeout()` error when no receipt came in time. */
  promise: Promise<Outcome>;
  cancel(): void;
}

/** What ingress needs of receipts: to wait for one, registered before the envelope is sent. */
export interface ReceiptWaiter {
  wait(id: string, timeoutMs: number, onTimeout: () => Error): PendingReceipt;
}

export interface Accepted {
  id: string;
  /** Present when the caller asked to wait for the commit. */
  receipt?: PendingReceipt;
  /** The envelope id was committed before (a replay): nothing was added. */
  duplicate?: boolean;
}

/** The rooms' validators (DESIGN §7): throws RejectedError when one refuses the message. */
export interface MessageCheck {
  check(message: Submission): Promise<void>;
}

/** Turns a client's message into an envelope and puts it in the funnel: what HTTP and WebSocket share. */
export class Ingress {
  constructor(
    private readonly publisher: Publisher,
    private readonly receipts: ReceiptWaiter,
    private readonly metrics: Metrics,
    private readonly options: IngressOptions,
    private readonly limiter?: PublishRateLimiter,
    private readonly validators?: MessageCheck,
  ) {}

  async submit(s: Submission, wait: boolean): Promise<Accepted> {
    if (s.rateLimited !== undefined && this.limiter) {
      try {
        await this.limiter.take(s.rateLimited);
      } catch (err) {
        this.metrics.ingressRejected.inc({
          source: s.source,
          reason: err instanceof ThresholdError ? err.code : 'error',
        });
        throw err;
      }
    }
    if (this.validators) {
      try {
        await this.validators.check(s);
      } catch (err) {
        this.metrics.ingressRejected.inc({
          source: s.source,
          reason: err instanceof ThresholdError ? err.code : 'error',
        });
        throw err;
      }
    }
    // Scoped by room: a client's key (or WS frame id) names one message to one room, so the
    // same key sent to two rooms is two messages, never a false duplicate.
    const id =
      s.id ?? `${s.source}:${s.room}:${s.sender.kind}:${s.sender.id}:${s.clientKey ?? newUlid()}`;
    const envelope: Envelope = {
      v: ENVELOPE_VERSION,
      id,
      room: s.room,
      source: s.source,
      sender: s.sender,
      body: s.body,
      kind: s.kind,
      origin: s.conn ? { node: this.options.nodeId, conn: s.conn } : { node: this.options.nodeId },
      receivedAt: Date.now(),
    };
    if (s.media?.length) envelope.media = s.media;
    if (s.via) envelope.via = s.via;

    // Registered before the XADD, so the commit cannot outrun its own waiter.
    const receipt = wait
      ? this.receipts.wait(
          id,
          this.options.receiptTimeoutMs,
          () =>
            new TimeoutError(
              `message ${id} was accepted but not committed within ${this.options.receiptTimeoutMs} ms; it is durable and will be committed`,
            ),
        )
      : undefined;
    let published: Published;
    try {
      published = await this.publisher.publish(envelope);
    } catch (err) {
      receipt?.cancel();
      this.metrics.ingressRejected.inc({
        source: s.source,
        reason: err instanceof ThresholdError ? err.code : 'error',
      });
      throw err;
    }
    this.metrics.ingress.inc({ source: s.source });
    if ('duplicateOf' in published) {
      // Committed before: no commit will answer the waiter, so ingress does.
      receipt?.cancel();
      this.metrics.duplicates.inc();
      const outcome: Outcome = { status: 'duplicate', seq: published.duplicateOf };
      return wait
        ? { id, duplicate: true, receipt: { promise: Promise.resolve(outcome), cancel() {} } }
        : { id, duplicate: true };
    }
    return receipt ? { id, receipt } : { id };
  }
}
