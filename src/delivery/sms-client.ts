import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
import { SmsSendError } from '../errors.ts';
import type { Logger } from '../log.ts';

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
 * Sends through the real `twilio` client. Another REST base (a stand-in) goes through the
 * client's `httpClient` option, the extension point twilio-node offers for this: a
 * RequestClient that rewrites the API origin, with everything else (auth, form encoding,
 * errors) left to the library.
 */
export class TwilioSmsClient implements SmsClient {
  private readonly client: twilio.Twilio;

  constructor(options: TwilioSmsClientOptions) {
    const base = options.apiUrl.replace(/\/+$/, '');
    const httpClient =
      base === TWILIO_API
        ? new twilio.RequestClient({ timeout: options.timeoutMs })
        : new ApiBaseRequestClient(base, options.timeoutMs);
    this.client = twilio(options.accountSid, options.authToken, {
      httpClient,
      timeout: options.timeoutMs,
    });
  }

  async send(sms: OutboundSms): Promise<{ sid: string }> {
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
        throw new SmsSendError(
          `Twilio ${err.status} ${err.code ?? ''}: ${err.message}`,
          err.status,
          err.code,
          {
            cause: err,
          },
        );
      }
      throw new SmsSendError(
        `Twilio unreachable: ${(err as Error).message}`,
        undefined,
        undefined,
        {
          cause: err,
        },
      );
    }
  }
}

class ApiBaseRequestClient extends twilio.RequestClient {
  constructor(
    private readonly base: string,
    timeoutMs: number,
  ) {
    super({ timeout: timeoutMs });
  }

  override request<T>(opts: RequestClient.RequestOptions<T>) {
    const uri = opts.uri.startsWith(TWILIO_API)
      ? this.base + opts.uri.slice(TWILIO_API.length)
      : opts.uri;
    return super.request<T>({ ...opts, uri });
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
