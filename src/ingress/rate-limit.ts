import type { Redis } from 'ioredis';
import { RateLimitedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';

export interface PublishRateOptions {
  /** Sustained publishes per second per client; 0 turns the limit off. */
  perSecond: number;
  /** Publishes a client may send at once after a quiet spell. */
  burst: number;
}

/** How often a failing limiter says so in the log (the metric counts every case). */
const LOG_EVERY_MS = 10_000;

/**
 * The publish rate of each client, kept in Redis (one GCRA key per member, `thr:rl:<member>`)
 * so the limit holds over every node: a client that spreads its requests over N nodes gets
 * the limit once, not N times.
 *
 * When Redis cannot be asked the limit fails open: the publish goes on (and most likely
 * fails at the funnel with 503 anyway), counted in `threshold_rate_limiter_errors_total`.
 */
export class PublishRateLimiter {
  private lastLog = 0;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly metrics: Metrics,
    private readonly options: PublishRateOptions,
    private readonly log: Logger,
  ) {}

  /** Counts one publish by `client`; throws RateLimitedError (429) when it is over its limit. */
  async take(client: string): Promise<void> {
    const { perSecond, burst } = this.options;
    if (perSecond <= 0) return;
    let answer: [0 | 1, number];
    try {
      answer = await this.redis.limitRate(this.keys.rateLimit(client), 1000 / perSecond, burst);
    } catch (err) {
      this.metrics.rateLimiterErrors.inc();
      if (Date.now() - this.lastLog > LOG_EVERY_MS) {
        this.lastLog = Date.now();
        this.log.warn(
          { err: (err as Error).message },
          'publish rate limit not checked (Redis unavailable): publishes go through unlimited until Redis answers again',
        );
      }
      return;
    }
    const [allowed, retryAfterMs] = answer;
    if (allowed === 1) return;
    this.metrics.rateLimited.inc({ limit: 'publish' });
    throw new RateLimitedError(
      `${client} is over its publish rate (${perSecond}/s, bursts of ${burst}); retry in ${retryAfterMs} ms`,
      retryAfterMs,
    );
  }
}
