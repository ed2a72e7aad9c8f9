import { describe, expect, it } from 'vitest';
import { classifyTwilio } from '../../src/delivery/channels/sms.ts';
import { decideRetry, type RetryPolicy } from '../../src/delivery/retry-policy.ts';
import { SmsSendError } from '../../src/errors.ts';

const POLICY: RetryPolicy = {
  maxAttempts: 3,
  maxRetryMs: 60_000,
  backoffBaseMs: 100,
  backoffMaxMs: 1000,
};
const job = (attempt: number, throttled = '') => ({ attempt: String(attempt), throttled });
const NOW = 1_000_000;

describe('decideRetry', () => {
  it('a throttled answer is retried without counting an attempt', () => {
    const d = decideRetry({ throttled: true }, job(2, '1'), NOW, NOW, POLICY);
    expect(d).toMatchObject({ kind: 'retry', attempt: 2, throttles: 2 });
  });

  it("a retry waits for the receiver's Retry-After; out of attempts it is exhausted", () => {
    expect(decideRetry({ retryAfterMs: 7000 }, job(1), NOW, NOW, POLICY)).toEqual({
      kind: 'retry',
      delayMs: 7000,
      attempt: 2,
      throttles: 0,
    });
    expect(decideRetry({ error: 'HTTP 503' }, job(2), NOW, NOW, POLICY)).toMatchObject({
      kind: 'exhausted',
      reason: 'attempts',
      detail: '3 attempts: HTTP 503',
    });
  });

  it('backs off exponentially, with jitter, up to backoffMaxMs', () => {
    const delays = [0, 1, 2, 3, 4].map((a) => {
      const d = decideRetry({}, job(a), NOW, NOW, { ...POLICY, maxAttempts: 10 });
      return d.kind === 'retry' ? d.delayMs : -1;
    });
    expect(delays[0]).toBeGreaterThanOrEqual(50);
    expect(delays[0]).toBeLessThanOrEqual(100);
    expect(delays[2]).toBeGreaterThanOrEqual(200);
    expect(delays[2]).toBeLessThanOrEqual(400);
    expect(delays[4]).toBeLessThanOrEqual(1000);
  });

  it('a delivery failing for longer than maxRetryMs is exhausted (expired)', () => {
    expect(decideRetry({}, job(0), NOW - 60_001, NOW, POLICY)).toMatchObject({
      kind: 'exhausted',
      reason: 'expired',
    });
  });
});

describe('classifyTwilio', () => {
  it('a 429 is a throttled retry that slows the number down', () => {
    expect(classifyTwilio(new SmsSendError('slow down', 429, 20429))).toMatchObject({
      status: 'retry',
      code: '20429',
      throttled: true,
      slowDown: true,
    });
  });

  it("a 5xx is retried after Twilio's Retry-After; a timeout is an ambiguous retry", () => {
    const err = new SmsSendError('oops', 503, undefined, { retryAfterMs: 7000 });
    expect(classifyTwilio(err)).toMatchObject({ status: 'retry', retryAfterMs: 7000 });
    const timeout = new SmsSendError('timeout', undefined, undefined, { reach: 'ambiguous' });
    expect(classifyTwilio(timeout)).toMatchObject({ status: 'retry', ambiguous: true });
  });

  it('21610 and 21211 fail the recipient (and mark it); other 4xx are dead-lettered with advice', () => {
    const answered = { reach: 'answered' as const };
    expect(classifyTwilio(new SmsSendError('unsubscribed', 400, 21610, answered))).toMatchObject({
      status: 'failed',
      mark: 'opted_out',
    });
    expect(classifyTwilio(new SmsSendError('invalid', 400, 21211, answered))).toMatchObject({
      status: 'failed',
      mark: 'invalid',
    });
    expect(classifyTwilio(new SmsSendError('auth', 401, 20003, answered))).toMatchObject({
      status: 'failed',
      deadLetter: 'sms_rejected',
      error: expect.stringMatching(/TWILIO_AUTH_TOKEN/),
    });
  });
});
