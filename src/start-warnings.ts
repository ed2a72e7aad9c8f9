import type { Logger } from './log.ts';

/**
 * What an operator must know about a node that started in a development or half-configured
 * mode: no secrets (every request trusted), SMS logged instead of sent, or not sending at all,
 * or Twilio signatures checked against the node's own address.
 */
export function warnAtStart(
  log: Logger,
  state: {
    devMode: boolean;
    sms: { live: boolean; dev: unknown };
    host: string;
    /** THRESHOLD_PUBLIC_URL as configured ('' when not). */
    configuredPublicUrl: string;
    publicUrl: string;
  },
): void {
  const { devMode, sms, host, configuredPublicUrl, publicUrl } = state;
  if (devMode)
    log.warn(
      'open development mode: no THRESHOLD_ADMIN_TOKEN or THRESHOLD_JWT_SECRET, every request is trusted (loopback only)',
    );
  if (!sms.live && sms.dev)
    log.warn(
      'SMS development mode: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, so texts are logged, not sent; POST /v1/dev/sms simulates a phone, GET /v1/dev/outbox lists the texts',
    );
  else if (!sms.live)
    log.error(
      { host },
      'SMS is not sending: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN. Texts stay queued in the outbox (nothing is lost) until a node starts with both set',
    );
  else if (!configuredPublicUrl)
    log.warn(
      { url: publicUrl },
      "no THRESHOLD_PUBLIC_URL: Twilio webhook signatures are checked against this node's own address, which fails behind a proxy",
    );
}
