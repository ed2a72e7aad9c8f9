/** How long to wait before reconnecting: exponential, capped, with jitter. */
export interface BackoffOptions {
  /**
   * The ceiling of the first wait; it doubles with each failed attempt.
   * @default 250
   */
  baseMs?: number;
  /**
   * The largest ceiling.
   * @default 10000
   */
  maxMs?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { baseMs: 250, maxMs: 10_000 };

/**
 * The wait before attempt `attempt` (0 for the first retry): between half the ceiling and the
 * ceiling, so clients cut off by the same dead node do not all come back at once, and no wait
 * is ever near zero.
 */
export function backoffDelay(
  attempt: number,
  options: Required<BackoffOptions> = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
