/** Time, so rate limits can be tested without waiting. */
export interface Clock {
  now(): number;
}

/**
 * One token bucket per key (a sending number): `ratePerSecond` tokens a second, at most
 * `burst` saved up.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly clock: Clock = Date,
  ) {}

  /** Takes a token and returns 0, or returns how many ms until one is there (taking nothing). */
  take(key: string): number {
    const now = this.clock.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(
      this.burst,
      bucket.tokens + ((now - bucket.at) * this.ratePerSecond) / 1000,
    );
    bucket.at = now;
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - bucket.tokens) * 1000) / this.ratePerSecond);
  }

  /**
   * Holds a key back: no token for `ms` from now (Twilio said 429, or asked to wait). Tokens
   * then come back at the usual rate.
   */
  hold(key: string, ms: number): void {
    const now = this.clock.now();
    const bucket = this.buckets.get(key) ?? { tokens: this.burst, at: now };
    const tokens = Math.min(
      this.burst,
      bucket.tokens + ((now - bucket.at) * this.ratePerSecond) / 1000,
    );
    this.buckets.set(key, {
      tokens: Math.min(tokens, 1 - (ms * this.ratePerSecond) / 1000),
      at: now,
    });
  }

  /** Forgets buckets that are full again (idle numbers), so the map does not grow forever. */
  prune(): void {
    const now = this.clock.now();
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * this.ratePerSecond) / 1000 >= this.burst)
        this.buckets.delete(key);
    }
  }
}
