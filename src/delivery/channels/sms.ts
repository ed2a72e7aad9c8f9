import { SmsSendError } from '../../errors.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { RunnerChannel, SendOutcome } from '../channel.ts';
import { isOptedOut, type MemberSettingsStore } from '../member-settings.ts';
import { parseMedia } from '../outbox-job.ts';
import type { RetryPolicy } from '../retry-policy.ts';
import type { OutboundSms, SmsClient } from '../sms-client.ts';

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

export interface SmsChannelOptions {
  /** Texts per second per sending number (a US long code takes about 1). */
  ratePerSecond: number;
  burst: number;
  /** Twilio requests in flight at once, over all numbers. */
  maxInFlight: number;
  /** Jobs held in memory per sending number; more wait in the outbox's retry set. */
  maxQueuedPerNumber: number;
  /** How long one Twilio request may take. */
  sendTimeoutMs: number;
  /** Base of the status callback URL (`<publicUrl>/twilio/status`); "" sends none. */
  publicUrl: string;
  retry: RetryPolicy;
}

/** Any error of a send as an SmsSendError: one that is not Twilio's may or may not have reached it. */
export function asSendError(err: unknown): SmsSendError {
  if (err instanceof SmsSendError) return err;
  return new SmsSendError(`SMS client failed: ${(err as Error).message}`, undefined, undefined, {
    cause: err,
    reach: 'ambiguous',
  });
}

/**
 * What a failed Twilio request means for the runner: 429, 5xx and no answer are retried (a
 * 429 counts no attempt and slows its number down); an unsubscribed or invalid recipient
 * fails (and is marked so: `mark`); any other refusal needs someone to act: dead letter.
 */
export function classifyTwilio(
  err: SmsSendError,
): SendOutcome & { mark?: 'opted_out' | 'invalid' } {
  const code = String(err.twilioCode ?? err.httpStatus ?? err.reach);
  const status = err.httpStatus;
  const throttled = status === 429;
  const retryable = throttled || status === undefined || status >= 500 || err.reach !== 'answered';
  if (retryable) {
    const outcome: SendOutcome = { status: 'retry', code, error: err.message, throttled };
    if (err.retryAfterMs !== undefined) outcome.retryAfterMs = err.retryAfterMs;
    outcome.slowDown = throttled || err.retryAfterMs !== undefined;
    outcome.ambiguous = err.reach === 'ambiguous';
    return outcome;
  }
  if (err.twilioCode === TWILIO_UNSUBSCRIBED || err.twilioCode === TWILIO_INVALID_NUMBER) {
    const mark = err.twilioCode === TWILIO_UNSUBSCRIBED ? 'opted_out' : 'invalid';
    return { status: 'failed', code, error: `Twilio refused the recipient: ${err.message}`, mark };
  }
  const advice = REFUSALS[err.twilioCode ?? -1] ?? 'see the error code in the Twilio docs';
  return {
    status: 'failed',
    code,
    error: `Twilio ${code}: ${err.message} (${advice})`,
    deadLetter: 'sms_rejected',
  };
}

/**
 * The SMS channel (built in): members `phone:<E.164>`, texted from the room's number (its
 * planner, `sms-plan.ts`, decides the text and who is skipped at commit). One lane per
 * sending number, rate-limited as the carriers want; a retried text does not hold the others.
 * Opt-outs are checked again before every text.
 */
export function createSmsChannel(
  deps: { client: SmsClient; members: MemberSettingsStore; metrics: Metrics },
  options: SmsChannelOptions,
): RunnerChannel {
  const { client, members, metrics } = deps;
  return {
    name: 'sms',
    prefix: 'phone',
    lane: (job) => job.from ?? '',
    rate: { perSecond: options.ratePerSecond, burst: options.burst },
    ordered: false,
    maxInFlight: options.maxInFlight,
    maxQueuedPerLane: options.maxQueuedPerNumber,
    sendTimeoutMs: options.sendTimeoutMs,
    retry: options.retry,
    async send(job) {
      const { fields } = job;
      const from = fields.from ?? '';
      const settings = await members.get(job.member);
      if (isOptedOut(settings, from) || settings.invalid) {
        const code = settings.invalid ? 'invalid' : 'opted_out';
        return { status: 'failed', code, error: `recipient ${code}`, outcome: 'skipped' };
      }
      const sms: OutboundSms = {
        to: job.member.slice('phone:'.length),
        from,
        body: fields.body ?? '',
      };
      if (fields.media) sms.mediaUrl = parseMedia(fields.media);
      const d = fields.kind === 'relay' && options.publicUrl ? fields.d : '';
      if (d)
        sms.statusCallback = `${options.publicUrl.replace(/\/+$/, '')}/twilio/status?d=${encodeURIComponent(d)}`;
      try {
        const { sid } = await client.send(sms);
        metrics.smsSent.inc({ number: from });
        return { status: 'sent', ref: sid };
      } catch (err) {
        const { mark, ...outcome } = classifyTwilio(asSendError(err));
        if (mark === 'opted_out') await members.setOptedOut(job.member, from, true);
        else if (mark === 'invalid') await members.setInvalid(job.member);
        return outcome;
      }
    },
  };
}
