import { TokenBuckets } from '../delivery/token-bucket.ts';

export interface FrameRateOptions {
  /** Frames a client may send per second, sustained (0: no limit); more are dropped. */
  framesPerSecond: number;
  /** Frames a client may send at once after a quiet spell. */
  frameBurst: number;
  /**
   * Frames a client may have dropped before it is closed with 1008; they are forgiven at
   * `framesPerSecond`, so only a client sustained at over twice the rate reaches it.
   */
  maxDroppedFrames: number;
}

/** What to do with a client's frame: read it, drop it (telling the client once a run), or close. */
export type FrameVerdict =
  | { action: 'read' }
  | { action: 'drop'; tell: boolean; retryAfterMs: number }
  | { action: 'close' };

/**
 * One connection's frame rate: a frame over it is dropped unread. The first drop of a run
 * tells the client (one `rate_limited` error, not one per frame, so a flood does not turn
 * into a flood of answers). Each drop also spends the client's patience, `maxDroppedFrames`
 * drops that come back at the frame rate: a client that keeps sending at more than twice
 * the rate runs out and is closed (1008); one that only bursts over it now and then is not.
 */
export class FrameRate {
  private readonly frames: TokenBuckets;
  private readonly patience: TokenBuckets;
  /** Dropping frames since the last one let through (the client has been told). */
  private dropping = false;

  constructor(private readonly options: FrameRateOptions) {
    this.frames = new TokenBuckets(options.framesPerSecond, options.frameBurst);
    this.patience = new TokenBuckets(options.framesPerSecond, options.maxDroppedFrames);
  }

  /** The verdict on one more frame, arriving now. */
  next(): FrameVerdict {
    if (this.options.framesPerSecond <= 0) return { action: 'read' };
    const waitMs = this.frames.take('frames');
    if (waitMs === 0) {
      this.dropping = false;
      return { action: 'read' };
    }
    if (this.patience.take('drops') > 0) return { action: 'close' };
    const tell = !this.dropping;
    this.dropping = true;
    return { action: 'drop', tell, retryAfterMs: waitMs };
  }
}
