import type { Config } from './config.ts';
import type { Logger } from './log.ts';

/**
 * What an operator must hear once a node has started: the modes that trust or drop more
 * than a production node would (open development mode, SMS not sending).
 */
export function warnAtStart(
  log: Logger,
  config: Pick<Config, 'host' | 'publicUrl'>,
  state: { devMode: boolean; sms: { live: boolean; dev: unknown }; publicUrl: string },
): void {
  const { devMode, sms, publicUrl } = state;
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
      { host: config.host },
      'SMS is not sending: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN. Texts stay queued in the outbox (nothing is lost) until a node starts with both set',
    );
  else if (!config.publicUrl)
    log.warn(
      { url: publicUrl },
      "no THRESHOLD_PUBLIC_URL: Twilio webhook signatures are checked against this node's own address, which fails behind a proxy",
    );
}
