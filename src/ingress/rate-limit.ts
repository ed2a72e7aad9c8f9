import type { RedisClient } from '../redis/client.ts';
import { RateLimitedError, UnavailableError, isRedisUnavailable } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';

export interface PublishRateOptions {
  /** Sustained publishes per second per client; 0 turns the limit off. */
  perSecond: number;
  /** Publishes a client may send at once after a quiet spell. */
  burst: number;
  /**
   * What is limited, when not publishes (`room_create`): its own key per client
   * (`thr:rl:<limit>:<member>`), metric label and wording.
   */
  limit?: string;
}

/** How often a failing limiter says so in the log (the metric counts every case). */
const LOG_EVERY_MS = 10_000;

/**
 * The publish rate of each client, kept in Redis (one GCRA key per member, `thr:rl:<member>`)
 * so the limit holds over every node: a client that spreads its requests over N nodes gets
 * the limit once, not N times.
 *
 * When Redis is down or does not answer in time, the publish is refused with the 503 the
 * funnel would give it (which needs the same Redis): going on would only make the member wait
 * a second command timeout for that answer. Any other failure (a script error, say) fails
 * open: the publish goes on unchecked, counted in `threshold_rate_limiter_errors_total`.
 */
export class PublishRateLimiter {
  private lastLog = 0;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly metrics: Metrics,
    private readonly options: PublishRateOptions,
    private readonly log: Logger,
  ) {}

  /**
   * Counts one publish by `client`; throws RateLimitedError (429) when it is over its limit,
   * UnavailableError (503) when Redis is unavailable.
   */
  async take(client: string): Promise<void> {
    const { perSecond, burst, limit = 'publish' } = this.options;
    if (perSecond <= 0) return;
    const key = this.keys.rateLimit(limit === 'publish' ? client : `${limit}:${client}`);
    let answer: [0 | 1, number];
    try {
      answer = await this.redis.limitRate(key, 1000 / perSecond, burst);
    } catch (err) {
      if (isRedisUnavailable(err))
        throw new UnavailableError(
          `the ${limit} rate could not be checked (Redis unavailable); retry`,
          {
            cause: err,
          },
        );
      this.metrics.rateLimiterErrors.inc();
      if (Date.now() - this.lastLog > LOG_EVERY_MS) {
        this.lastLog = Date.now();
        this.log.warn(
          { err: (err as Error).message },
          'publish rate limit not checked (the rate script failed): publishes go through unlimited until it works again',
        );
      }
      return;
    }
    const [allowed, retryAfterMs] = answer;
    if (allowed === 1) return;
    this.metrics.rateLimited.inc({ limit });
    const rate = perSecond >= 1 ? `${perSecond}/s` : `${Math.round(perSecond * 3600)}/hour`;
    throw new RateLimitedError(
      `${client} is over its ${limit.replaceAll('_', ' ')} rate (${rate}, bursts of ${burst}); retry in ${retryAfterMs} ms`,
      retryAfterMs,
    );
  }
}

/** A limit of `perHour` per client over every node (0: none), in bursts of up to an hour's worth. */
export function hourlyLimiter(
  deps: { redis: RedisClient; keys: Keys; metrics: Metrics; log: Logger },
  limit: string,
  perHour: number,
): PublishRateLimiter {
  const { redis, keys, metrics, log } = deps;
  const options = { perSecond: perHour / 3600, burst: Math.max(1, Math.ceil(perHour)), limit };
  return new PublishRateLimiter(redis, keys, metrics, options, log);
}
