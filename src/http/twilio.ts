import { randomBytes } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import twilio from 'twilio';
import { z } from 'zod';
import type { DevSmsClient } from '../delivery/sms-client.ts';
import {
  ForbiddenError,
  isRedisUnavailable,
  PayloadTooLargeError,
  ValidationError,
} from '../errors.ts';
import { E164 } from '../funnel/envelope.ts';
import type { InboundSms, SmsInbound } from '../ingress/sms-inbound.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import type { RedisClient } from '../redis/client.ts';
import type { AppEnv } from './app.ts';
import { requireAdmin } from './auth.ts';

export interface TwilioRoutesDeps {
  inbound: SmsInbound;
  redis: RedisClient;
  keys: Keys;
  metrics: Metrics;
  log: Logger;
  /** Development mode's client, whose texts `GET /v1/dev/outbox` lists; undefined: no dev routes. */
  dev?: DevSmsClient | undefined;
}

export interface TwilioRoutesOptions {
  /** Signs Twilio's webhooks; empty: every webhook is refused (development mode). */
  authToken: string;
  /**
   * The URL Twilio calls (THRESHOLD_PUBLIC_URL, else the node's own): signatures cover it,
   * never the Host header a proxy passed on. A function: it is known once the node listens.
   */
  publicUrl: () => string;
  maxBodyBytes: number;
}

/** A Twilio MessageSid as we accept it (webhooks, status callbacks). */
const MESSAGE_SID = /^[A-Za-z0-9]{2,64}$/;

/** Twilio's MessageStatus → the recipient states of DESIGN §3 (others are ignored). */
const STATUS: Record<string, string> = {
  accepted: 'queued',
  scheduled: 'queued',
  queued: 'queued',
  sending: 'queued',
  sent: 'sent',
  delivered: 'delivered',
  read: 'delivered',
  undelivered: 'undelivered',
  failed: 'failed',
  canceled: 'failed',
};

export const DevSms = z
  .object({
    from: z.string().regex(E164, 'expected an E.164 number such as +15551234567'),
    to: z.string().regex(E164, 'expected an E.164 number such as +15551234567'),
    body: z.string(),
    media: z.array(z.url()).max(10).optional(),
  })
  .strict();

/**
 * Twilio's webhooks (`POST /twilio/sms`, `POST /twilio/status`, both signed) and, in
 * development mode, `POST /v1/dev/sms` and `GET /v1/dev/outbox`. Mounted on the app like
 * the WebSocket route, so the app's auth (for /v1) and error handling apply.
 */
export function mountTwilio(
  app: Hono<AppEnv>,
  deps: TwilioRoutesDeps,
  options: TwilioRoutesOptions,
): void {
  const { inbound, redis, keys, metrics, log, dev } = deps;
  const webhooks = new Hono<AppEnv>();
  webhooks.use(
    bodyLimit({
      maxSize: options.maxBodyBytes,
      onError: () => {
        throw new PayloadTooLargeError(options.maxBodyBytes);
      },
    }),
  );

  /** The form Twilio posted, once its X-Twilio-Signature checks out against the public URL. */
  async function signedForm(c: Context): Promise<Record<string, string>> {
    // Twilio posts forms; any other body counts as no parameters (and so fails the signature).
    // Parsed here rather than by parseBody, which answers a malformed multipart body with 500.
    const text = await c.req.text();
    const form = /^application\/x-www-form-urlencoded\s*(;|$)/i.test(
      c.req.header('content-type') ?? '',
    )
      ? Object.fromEntries(new URLSearchParams(text))
      : {};
    const url = options.publicUrl().replace(/\/+$/, '') + c.req.path + new URL(c.req.url).search;
    const signature = c.req.header('x-twilio-signature');
    if (
      !options.authToken ||
      !signature ||
      !twilio.validateRequest(options.authToken, signature, url, form)
    ) {
      metrics.smsInbound.inc({ outcome: 'bad_signature' });
      const why = !options.authToken
        ? 'no TWILIO_AUTH_TOKEN is configured, so no webhook can be verified'
        : signature
          ? `X-Twilio-Signature does not match ${url}`
          : 'X-Twilio-Signature is missing';
      log.warn(
        { path: c.req.path, url },
        `refused a Twilio webhook: ${why} (if Twilio really sent it, THRESHOLD_PUBLIC_URL must be the URL set in the Twilio console)`,
      );
      throw new ForbiddenError(`${why}`);
    }
    return form;
  }

  webhooks.post('/sms', async (c) => {
    const form = await signedForm(c);
    const sms: InboundSms = {
      messageSid: form.MessageSid ?? form.SmsSid ?? '',
      from: form.From ?? '',
      to: form.To ?? '',
      body: form.Body ?? '',
      media: Array.from(
        { length: Math.min(10, Number(form.NumMedia ?? 0) || 0) },
        (_, i) => form[`MediaUrl${i}`] ?? '',
      ).filter((u) => u !== ''),
    };
    if (!MESSAGE_SID.test(sms.messageSid))
      throw new ValidationError('MessageSid: missing or malformed', 'MessageSid');
    if (!E164.test(sms.from)) throw new ValidationError('From: not an E.164 number', 'From');
    if (!E164.test(sms.to)) throw new ValidationError('To: not an E.164 number', 'To');
    try {
      await inbound.handle(sms);
    } catch (err) {
      // Answered 503 (Redis) or 500: Twilio may retry it, or it is lost with the error logged.
      metrics.smsInbound.inc({ outcome: isRedisUnavailable(err) ? 'unavailable' : 'error' });
      throw err;
    }
    // Empty TwiML: the room's texts go out through the outbox, not in this answer.
    return c.body(new twilio.twiml.MessagingResponse().toString(), 200, {
      'content-type': 'text/xml',
    });
  });

  webhooks.post('/status', async (c) => {
    const form = await signedForm(c);
    const d = c.req.query('d') ?? '';
    const [room, to, ...rest] = d.split('~');
    const envelopeId = rest.join('~');
    const status = STATUS[form.MessageStatus ?? ''];
    if (!room || !to || !envelopeId) throw new ValidationError('d: not a delivery id', 'd');
    if (!status) return c.body(null, 204);
    // The sid is recorded whatever the status: a text Twilio has is never sent again.
    // Delivery ids name the member (`phone:+1555…`); older ones the bare number.
    const member = to.startsWith('phone:') ? to : `phone:${to}`;
    const moved = await redis.recordStatus(
      keys.msg(keys.partitionOf(room), envelopeId),
      'sms',
      member,
      status,
      form.ErrorCode ?? '',
      MESSAGE_SID.test(form.MessageSid ?? '') ? (form.MessageSid ?? '') : '',
    );
    const result = moved === Code.OK ? 'moved' : moved === Code.ALREADY ? 'unchanged' : 'stale';
    metrics.smsStatus.inc({ status, result });
    if (moved === Code.OK && status !== 'queued' && status !== 'sent')
      metrics.deliveries.inc({ channel: 'sms', outcome: status });
    return c.body(null, 204);
  });
  app.route('/twilio', webhooks);

  if (!dev) return;
  app.post('/v1/dev/sms', async (c) => {
    requireAdmin(c.get('principal'));
    let json: unknown;
    try {
      json = await c.req.json();
    } catch (err) {
      throw new ValidationError(`malformed JSON body: ${(err as Error).message}`);
    }
    const parsed = DevSms.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue?.path.join('.') || undefined;
      throw new ValidationError(
        `${field ?? 'request body'}: ${issue?.message ?? 'invalid'}`,
        field,
      );
    }
    const messageSid = `SM${randomBytes(16).toString('hex')}`;
    const { from, to, body, media = [] } = parsed.data;
    const outcome = await inbound.handle({ messageSid, from, to, body, media });
    return c.json({ messageSid, outcome }, 202);
  });
  app.get('/v1/dev/outbox', (c) => {
    requireAdmin(c.get('principal'));
    return c.json({ texts: dev.sent() });
  });
}
