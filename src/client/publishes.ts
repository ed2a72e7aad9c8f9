/** Publishes sent and not yet acked: resent under the same id until the server settles them. */
import { backoffDelay, type BackoffOptions } from './backoff.ts';
import type { ThresholdClientError } from './errors.ts';

/** Error codes a publish is retried on, under the same id, rather than rejected. */
const RETRIED = new Set(['unavailable', 'timeout', 'rate_limited', 'internal']);

export interface Ack {
  seq: number;
  id: string;
}

type PublishFrame = { type: 'publish'; room: string; body: string; id: string };

interface PendingPublish {
  frame: PublishFrame;
  resolve: (ack: Ack) => void;
  reject: (err: ThresholdClientError) => void;
  retry?: ReturnType<typeof setTimeout>;
}

export class PendingPublishes {
  private readonly pending = new Map<string, PendingPublish>();

  constructor(
    /** Sends a frame if the socket is open; a publish not sent now goes out with `resend()`. */
    private readonly send: (frame: PublishFrame) => boolean,
    private readonly backoff: Required<BackoffOptions>,
  ) {}

  /** Sends a publish, or joins the one already waiting under the same id. */
  add(room: string, body: string, id: string): Promise<Ack> {
    const existing = this.pending.get(id);
    if (existing)
      return new Promise((resolve, reject) => {
        const { resolve: r0, reject: j0 } = existing;
        existing.resolve = (ack) => (r0(ack), resolve(ack));
        existing.reject = (err) => (j0(err), reject(err));
      });
    return new Promise((resolve, reject) => {
      const frame = { type: 'publish' as const, room, body, id };
      this.pending.set(id, { frame, resolve, reject });
      this.send(frame);
    });
  }

  ack(id: string, seq: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.retry);
    p.resolve({ seq, id });
  }

  /**
   * Settles the publish an error frame names: sent again later if the code is retryable,
   * rejected otherwise. Returns false when no publish of `id` is waiting.
   */
  failed(id: string | undefined, err: ThresholdClientError, retryAfterMs?: number): boolean {
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p) return false;
    if (RETRIED.has(err.code)) {
      clearTimeout(p.retry);
      p.retry = setTimeout(() => this.send(p.frame), retryAfterMs ?? backoffDelay(2, this.backoff));
      return true;
    }
    this.pending.delete(id!);
    p.reject(err);
    return true;
  }

  /** After a (re)connect: everything unacked goes out again now, not at its retry time. */
  resend(): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.retry);
      this.send(p.frame);
    }
  }

  /** On close: nothing will be acked any more. */
  rejectAll(err: ThresholdClientError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.retry);
      p.reject(err);
    }
    this.pending.clear();
  }
}
