import type { SendResult } from './channel.ts';

/** How the outbox runner retries a channel's deliveries. */
export interface RetryPolicy {
  /** Attempts (retries and unexpected errors; throttling not counted) before a dead letter. @default 6 */
  maxAttempts: number;
  /** How long a delivery may keep being retried (throttled answers included). @default 86400000 */
  maxRetryMs: number;
  /** First retry delay; doubles each attempt, with jitter. @default 2000 */
  backoffBaseMs: number;
  /** Longest retry delay. @default 300000 */
  backoffMaxMs: number;
}

/** A retry policy from its settings (`sms.*`, `outbox.*`: hours to ms). */
export function retryPolicy(settings: {
  maxAttempts: number;
  maxRetryHours: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}): RetryPolicy {
  return {
    maxAttempts: settings.maxAttempts,
    maxRetryMs: Math.round(settings.maxRetryHours * 3_600_000),
    backoffBaseMs: settings.backoffBaseMs,
    backoffMaxMs: settings.backoffMaxMs,
  };
}

/** Exponential backoff with jitter: the delay before retry `n` (1-based). */
export function backoff(n: number, policy: RetryPolicy): number {
  const delay = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (n - 1));
  return Math.round(delay * (0.5 + Math.random() / 2));
}

/** What the runner makes of a `retry` answer. */
export type RetryDecision =
  | { kind: 'retry'; delayMs: number; attempt: number; throttles: number }
  /** Out of attempts or time: dead-letter it. */
  | { kind: 'exhausted'; reason: 'attempts' | 'expired'; detail: string; attempt: number };

/**
 * Decides when a job answered `retry` is tried again: after the receiver's `retryAfterMs`,
 * else after a backoff that grows with its attempts (with its throttled answers, for those),
 * unless it is out of attempts (`maxAttempts`) or of time (`maxRetryMs` since `sinceMs`).
 */
export function decideRetry(
  result: Pick<SendResult, 'retryAfterMs' | 'error'> & { throttled?: boolean },
  job: { attempt: string; throttled?: string | undefined },
  sinceMs: number,
  now: number,
  policy: RetryPolicy,
): RetryDecision {
  const throttled = result.throttled === true;
  const attempt = Number(job.attempt) + (throttled ? 0 : 1);
  const expired = now - sinceMs > policy.maxRetryMs;
  if (attempt < policy.maxAttempts && !expired) {
    const throttles = Number(job.throttled || 0) + (throttled ? 1 : 0);
    const delayMs = result.retryAfterMs ?? backoff(throttled ? throttles : attempt, policy);
    return { kind: 'retry', delayMs, attempt, throttles };
  }
  const why = result.error ?? 'no reason given';
  const detail = expired
    ? `still failing after ${Math.round(policy.maxRetryMs / 60_000)} min: ${why}`
    : `${attempt} attempts: ${why}`;
  return { kind: 'exhausted', reason: expired ? 'expired' : 'attempts', detail, attempt };
}

/**
 * A `Retry-After` header in ms: delay-seconds, or an HTTP date (RFC 9110 §10.2.3); undefined
 * when absent or unreadable.
 */
export function parseRetryAfter(value: unknown, now = Date.now()): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  // Every HTTP-date form starts with the day's name; Date.parse alone would take `-5` as a year.
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
