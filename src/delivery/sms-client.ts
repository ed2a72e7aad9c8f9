import { AsyncLocalStorage } from 'node:async_hooks';
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import { type SmsReach, SmsSendError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { parseRetryAfter } from './retry-policy.ts';

/** One text as the Messages API takes it. */
export interface OutboundSms {
  to: string;
  from: string;
  body: string;
  mediaUrl?: string[];
  /** Where Twilio reports sent / delivered / failed. */
  statusCallback?: string;
}

/** What the outbox sender sees of Twilio. Throws SmsSendError. */
export interface SmsClient {
  send(sms: OutboundSms): Promise<{ sid: string }>;
}

export interface TwilioSmsClientOptions {
  accountSid: string;
  authToken: string;
  /** REST base, `https://api.twilio.com` or a local stand-in. */
  apiUrl: string;
  timeoutMs: number;
}

const TWILIO_API = 'https://api.twilio.com';

/**
 * Socket errors that happen before a request is written (the connection was never made):
 * Twilio cannot have the text, so a retry is safe. Anything else without an answer (a
 * timeout, a reset, a hang-up) may come after Twilio accepted it: ambiguous.
 */
const UNREACHED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
]);

/** The failure's `code`, or that of its cause (axios wraps the socket error). */
function socketCode(err: unknown): string | undefined {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'string' && UNREACHED.has(e.code)) return e.code;
    if (typeof e !== 'object') break;
  }
  return undefined;
}

/**
 * Sends through the real `twilio` client. Its RestException keeps no response headers, so the
 * RequestClient (the extension point twilio-node offers, `httpClient`) notes the answer's
 * `Retry-After` for the call in progress; it also rewrites the API origin for a stand-in, with
 * everything else (auth, form encoding, errors) left to the library.
 */
export class TwilioSmsClient implements SmsClient {
  private readonly client: twilio.Twilio;
  private readonly call = new AsyncLocalStorage<{ retryAfter?: unknown }>();

  constructor(options: TwilioSmsClientOptions) {
    const base = options.apiUrl.replace(/\/+$/, '');
    const httpClient = new ApiBaseRequestClient(base, options.timeoutMs, this.call);
    this.client = twilio(options.accountSid, options.authToken, {
      httpClient,
      timeout: options.timeoutMs,
    });
  }

  send(sms: OutboundSms): Promise<{ sid: string }> {
    const call: { retryAfter?: unknown } = {};
    return this.call.run(call, async () => {
      try {
        const message = await this.client.messages.create({
          to: sms.to,
          from: sms.from,
          body: sms.body,
          ...(sms.mediaUrl?.length ? { mediaUrl: sms.mediaUrl } : {}),
          ...(sms.statusCallback ? { statusCallback: sms.statusCallback } : {}),
        });
        return { sid: message.sid };
      } catch (err) {
        if (err instanceof twilio.RestException) {
          const retryAfterMs = parseRetryAfter(call.retryAfter);
          throw new SmsSendError(
            `Twilio ${err.status} ${err.code ?? ''}: ${err.message}`,
            err.status,
            err.code,
            {
              cause: err,
              reach: 'answered',
              ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
            },
          );
        }
        const code = socketCode(err);
        const reach: SmsReach = code ? 'unreached' : 'ambiguous';
        throw new SmsSendError(
          code
            ? `Twilio unreachable (${code}): ${(err as Error).message}`
            : `no answer from Twilio (it may have accepted the text): ${(err as Error).message}`,
          undefined,
          undefined,
          { cause: err, reach },
        );
      }
    });
  }
}

/** The twilio client's requests, sent to `base` instead of api.twilio.com (also `threshold doctor`'s). */
export class ApiBaseRequestClient extends twilio.RequestClient {
  constructor(
    private readonly base: string,
    timeoutMs: number,
    private readonly call: AsyncLocalStorage<{ retryAfter?: unknown }>,
  ) {
    super({ timeout: timeoutMs });
  }

  override async request<T>(opts: RequestClient.RequestOptions<T>) {
    const uri =
      this.base !== TWILIO_API && opts.uri.startsWith(TWILIO_API)
        ? this.base + opts.uri.slice(TWILIO_API.length)
        : opts.uri;
    const response = await super.request<T>({ ...opts, uri });
    const store = this.call.getStore();
    const headers = response.headers as Record<string, unknown> | undefined;
    if (store && response.statusCode >= 400) store.retryAfter = headers?.['retry-after'];
    return response;
  }
}

/** A text the development client would have sent. */
export interface DevSms extends OutboundSms {
  sid: string;
  at: number;
}

/**
 * Development mode (no Twilio credentials): texts are logged and kept (the last `keep`) for
 * `GET /v1/dev/outbox`, never sent.
 */
export class DevSmsClient implements SmsClient {
  private readonly kept: DevSms[] = [];
  private counter = 0;

  constructor(
    private readonly log: Logger,
    private readonly keep = 1000,
  ) {}

  async send(sms: OutboundSms): Promise<{ sid: string }> {
    const sid = `SMdev${(++this.counter).toString(16).padStart(27, '0')}`;
    this.kept.push({ ...sms, sid, at: Date.now() });
    if (this.kept.length > this.keep) this.kept.shift();
    this.log.info(
      { to: sms.to, from: sms.from, body: sms.body, media: sms.mediaUrl },
      'SMS not sent (development mode: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)',
    );
    return { sid };
  }

  /** The texts "sent" so far, oldest first. */
  sent(): DevSms[] {
    return [...this.kept];
  }
}
