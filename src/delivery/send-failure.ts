import { SmsSendError } from '../errors.ts';
import type { OutboxJob } from './outbox-job.ts';

/** Twilio: "Attempt to send to unsubscribed recipient" (the member texted STOP). */
export const TWILIO_UNSUBSCRIBED = 21610;
/** Twilio: "The 'To' number is not a valid phone number." */
export const TWILIO_INVALID_NUMBER = 21211;

/** Advice for Twilio refusals that no retry fixes, logged with the dead letter. */
const REFUSALS: Record<number, string> = {
  20003: 'Twilio refused the credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN',
  20404: 'Twilio does not know the resource: check TWILIO_ACCOUNT_SID and the API URL',
  21212: "the room's number is not a valid sending number: check the room's numbers",
  21606: "the room's number cannot send SMS from this account: check it in the Twilio console",
  21659: "the room's number is not a Twilio number of this account: check the room's numbers",
  21408: 'the account may not text that region: enable it in the Twilio console (Geo permissions)',
  21612: 'Twilio cannot route texts between these numbers: check the room number',
  21617: 'the text is longer than 1600 characters (should not happen: report a bug)',
};

/** The sender's retry options (part of OutboxSenderOptions). */
export interface RetryPolicy {
  /** Attempts (5xx, network errors, timeouts, unexpected errors) before a text is dead-lettered. @default 6 */
  maxAttempts: number;
  /** How long a text may keep being retried (429s included, which count no attempt). @default 86400000 */
  maxRetryMs: number;
  /** First retry delay; doubles each attempt, with jitter. @default 2000 */
  backoffBaseMs: number;
  /** Longest retry delay. @default 300000 */
  backoffMaxMs: number;
}

/** What to do with a text whose send failed. */
export type FailureAction =
  /** Try again after `delayMs`; `slowDown`: Twilio said the number goes too fast (or struggles). */
  | { kind: 'retry'; delayMs: number; throttles: number; slowDown: boolean }
  /** Retryable, but out of attempts or time: dead-letter it. */
  | { kind: 'exhausted'; reason: 'sms_expired' | 'sms_attempts'; detail: string }
  /** Twilio refused the recipient (opted out, or not a phone number): mark the member, fail it. */
  | { kind: 'refused'; mark: 'opted_out' | 'invalid' }
  /** A refusal no retry fixes (credentials, the sending number, the account): someone must act. */
  | { kind: 'rejected'; detail: string; advice: string };

export interface Failure {
  /** Twilio's error code, else the HTTP status, else how far the request got. */
  code: string;
  /** Attempts so far, this one included (a 429 counts none). */
  attempt: number;
  action: FailureAction;
}

/** Any error of a send as an SmsSendError: one that is not Twilio's may or may not have reached it. */
export function asSendError(err: unknown): SmsSendError {
  if (err instanceof SmsSendError) return err;
  return new SmsSendError(`SMS client failed: ${(err as Error).message}`, undefined, undefined, {
    cause: err,
    reach: 'ambiguous',
  });
}

/** Exponential backoff with jitter: the delay before retry `n` (1-based). */
export function backoff(n: number, policy: RetryPolicy): number {
  const delay = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** (n - 1));
  return Math.round(delay * (0.5 + Math.random() / 2));
}

/** Decides what a failed send of `job` (in the outbox since `sinceMs`) leads to, at `now`. */
export function classifyFailure(
  err: SmsSendError,
  job: OutboxJob,
  sinceMs: number,
  now: number,
  policy: RetryPolicy,
): Failure {
  const code = String(err.twilioCode ?? err.httpStatus ?? err.reach);
  const status = err.httpStatus;
  const throttled = status === 429;
  const retryable = throttled || status === undefined || status >= 500 || err.reach !== 'answered';
  const attempt = Number(job.attempt) + (throttled ? 0 : 1);
  const expired = now - sinceMs > policy.maxRetryMs;

  if (retryable && attempt < policy.maxAttempts && !expired) {
    const throttles = Number(job.throttled || 0) + (throttled ? 1 : 0);
    const delayMs = err.retryAfterMs ?? backoff(throttled ? throttles : attempt, policy);
    const slowDown = throttled || err.retryAfterMs !== undefined;
    return { code, attempt, action: { kind: 'retry', delayMs, throttles, slowDown } };
  }
  if (retryable) {
    const detail = expired
      ? `still failing after ${Math.round(policy.maxRetryMs / 60_000)} min (sms.maxRetryHours): ${err.message}`
      : `${attempt} attempts: ${err.message}`;
    const reason = expired ? 'sms_expired' : 'sms_attempts';
    return { code, attempt, action: { kind: 'exhausted', reason, detail } };
  }
  if (err.twilioCode === TWILIO_UNSUBSCRIBED || err.twilioCode === TWILIO_INVALID_NUMBER) {
    const mark = err.twilioCode === TWILIO_UNSUBSCRIBED ? 'opted_out' : 'invalid';
    return { code, attempt, action: { kind: 'refused', mark } };
  }
  const advice = REFUSALS[err.twilioCode ?? -1] ?? 'see the error code in the Twilio docs';
  const detail = `Twilio ${code}: ${err.message}`;
  return { code, attempt, action: { kind: 'rejected', detail, advice } };
}
