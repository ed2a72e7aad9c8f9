import { describe, expect, it } from 'vitest';
import type { OutboxJob } from '../../src/delivery/outbox-job.ts';
import { classifyFailure, type RetryPolicy } from '../../src/delivery/send-failure.ts';
import { SmsSendError } from '../../src/errors.ts';

const POLICY: RetryPolicy = {
  maxAttempts: 3,
  maxRetryMs: 60_000,
  backoffBaseMs: 100,
  backoffMaxMs: 1000,
};
const job = (attempt: number, throttled = ''): OutboxJob => ({
  kind: 'relay',
  d: '',
  to: '+15550000001',
  from: '+15550000000',
  body: 'hi',
  media: '',
  room: 'r',
  msg: 'm',
  attempt: String(attempt),
  throttled,
});
const NOW = 1_000_000;

describe('classifyFailure', () => {
  it('a 429 is retried without counting an attempt, slowing the number down', () => {
    const f = classifyFailure(
      new SmsSendError('slow down', 429, 20429),
      job(2, '1'),
      NOW,
      NOW,
      POLICY,
    );
    expect(f).toMatchObject({
      code: '20429',
      attempt: 2,
      action: { kind: 'retry', throttles: 2, slowDown: true },
    });
  });

  it("a 5xx is retried until maxAttempts, then it is exhausted; Retry-After is Twilio's delay", () => {
    const err = new SmsSendError('oops', 503, undefined, { retryAfterMs: 7000 });
    expect(classifyFailure(err, job(1), NOW, NOW, POLICY).action).toEqual({
      kind: 'retry',
      delayMs: 7000,
      throttles: 0,
      slowDown: true,
    });
    expect(classifyFailure(err, job(2), NOW, NOW, POLICY).action).toMatchObject({
      kind: 'exhausted',
      reason: 'sms_attempts',
    });
  });

  it('a text failing for longer than maxRetryMs is exhausted (expired)', () => {
    const err = new SmsSendError('timeout', undefined, undefined, { reach: 'ambiguous' });
    expect(classifyFailure(err, job(0), NOW - 60_001, NOW, POLICY).action).toMatchObject({
      kind: 'exhausted',
      reason: 'sms_expired',
    });
  });

  it('21610 and 21211 refuse the recipient; other 4xx are rejected with advice', () => {
    const answered = { reach: 'answered' as const };
    expect(
      classifyFailure(
        new SmsSendError('unsubscribed', 400, 21610, answered),
        job(0),
        NOW,
        NOW,
        POLICY,
      ).action,
    ).toEqual({ kind: 'refused', mark: 'opted_out' });
    expect(
      classifyFailure(new SmsSendError('invalid', 400, 21211, answered), job(0), NOW, NOW, POLICY)
        .action,
    ).toEqual({ kind: 'refused', mark: 'invalid' });
    expect(
      classifyFailure(new SmsSendError('auth', 401, 20003, answered), job(0), NOW, NOW, POLICY)
        .action,
    ).toMatchObject({ kind: 'rejected', advice: expect.stringMatching(/TWILIO_AUTH_TOKEN/) });
  });
});
