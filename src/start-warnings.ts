import type { Logger } from './log.ts';

export interface StartModes {
  /** No admin token and no JWT secret: every request is trusted (loopback only). */
  devMode: boolean;
  sms: { live: boolean; dev: unknown };
  host: string;
  /** THRESHOLD_PUBLIC_URL as configured ('' when unset), and the URL used in its place. */
  configuredPublicUrl: string;
  publicUrl: string;
}

/** What a started node says about modes an operator should know it runs in. */
export function warnOfModes(log: Logger, m: StartModes): void {
  if (m.devMode)
    log.warn(
      'open development mode: no THRESHOLD_ADMIN_TOKEN or THRESHOLD_JWT_SECRET, every request is trusted (loopback only)',
    );
  if (!m.sms.live && m.sms.dev)
    log.warn(
      'SMS development mode: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, so texts are logged, not sent; POST /v1/dev/sms simulates a phone, GET /v1/dev/outbox lists the texts',
    );
  else if (!m.sms.live)
    log.error(
      { host: m.host },
      'SMS is not sending: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN. Texts stay queued in the outbox (nothing is lost) until a node starts with both set',
    );
  else if (!m.configuredPublicUrl)
    log.warn(
      { url: m.publicUrl },
      "no THRESHOLD_PUBLIC_URL: Twilio webhook signatures are checked against this node's own address, which fails behind a proxy",
    );
}
