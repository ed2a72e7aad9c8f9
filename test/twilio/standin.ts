/**
 * A local stand-in for Twilio's Messages API, for tests (and anyone trying Threshold against
 * something that answers like Twilio): `POST /2010-04-01/Accounts/:sid/Messages.json` (and
 * `GET /2010-04-01/Accounts/:sid.json`, the account),
 * form-encoded, Basic auth, Twilio's JSON replies and errors. It records what it is sent,
 * can be told to fail (a 429 storm, 5xx, an error code for a number, slowness), and sends
 * signed status callbacks the way Twilio does.
 */
import { randomBytes } from 'node:crypto';
import { type ServerType, serve } from '@hono/node-server';
import { Hono } from 'hono';
import { postSigned } from './signing.ts';

/**
 * The URL Twilio is told to call: a proxy in front of the node, which strips `/thr`. Here (not
 * in sms-node.ts, which needs vitest) so the bench can point its nodes at the stand-in too.
 */
export const PUBLIC_URL = 'https://relay.example.test/thr';

export interface StandinMessage {
  sid: string;
  to: string;
  from: string;
  body: string;
  mediaUrls: string[];
  statusCallback?: string;
  at: number;
}

/** An error as Twilio returns it. */
export interface TwilioError {
  status: number;
  code: number;
  message?: string;
  /** Sent as the `Retry-After` header, in seconds. */
  retryAfter?: number;
}

export const TOO_MANY_REQUESTS: TwilioError = {
  status: 429,
  code: 20429,
  message: 'Too Many Requests',
};
export const UNSUBSCRIBED: TwilioError = {
  status: 400,
  code: 21610,
  message: 'Attempt to send to unsubscribed recipient',
};
export const SERVER_ERROR: TwilioError = {
  status: 500,
  code: 20500,
  message: 'Internal Server Error',
};

export interface StandinOptions {
  accountSid?: string;
  authToken?: string;
  /** The loopback port to listen on (default: any free one), known before it starts. */
  port?: number;
}

export interface Standin {
  /** Base URL to give the client (THRESHOLD_TWILIO_API_URL). */
  readonly url: string;
  readonly accountSid: string;
  readonly authToken: string;
  /** Texts accepted (201), oldest first. */
  messages(): StandinMessage[];
  /** Every request to the Messages API, accepted or not, by recipient. */
  attempts(to: string): number;
  /** Resolves with the accepted texts once `done(texts)` holds; rejects after timeoutMs. */
  waitFor(
    what: string,
    done: (texts: StandinMessage[]) => boolean,
    timeoutMs?: number,
  ): Promise<StandinMessage[]>;
  /** The next `n` requests (to anyone) fail with `error`. */
  failNext(n: number, error: TwilioError): void;
  /** Every request to `to` fails with `error` (until reset). */
  failFor(to: string, error: TwilioError): void;
  /** Answers each request after `ms`. */
  delay(ms: number): void;
  /**
   * After accepting a text with a StatusCallback, report `sent` then `delivered` to it, POSTed
   * to `deliverTo(callbackUrl)` (a proxy's view: the callback URL is the public one).
   */
  autoStatus(deliverTo: ((callbackUrl: string) => string) | undefined): void;
  /** Sends one signed status callback for an accepted text; resolves with the HTTP status. */
  sendStatus(
    message: StandinMessage,
    status: string,
    deliverTo: (callbackUrl: string) => string,
    errorCode?: number,
  ): Promise<number>;
  /** Forgets scripted failures, delay and auto status (recorded texts stay). */
  reset(): void;
  close(): Promise<void>;
}

/** Starts the stand-in on loopback (a free port unless `options.port`). */
export async function startStandin(options: StandinOptions = {}): Promise<Standin> {
  const accountSid = options.accountSid ?? `AC${randomBytes(16).toString('hex')}`;
  const authToken = options.authToken ?? randomBytes(16).toString('hex');
  const accepted: StandinMessage[] = [];
  const attempts = new Map<string, number>();
  const listeners = new Set<() => void>();
  let failures: { left: number; error: TwilioError } | undefined;
  let failing = new Map<string, TwilioError>();
  let delayMs = 0;
  let deliverTo: ((url: string) => string) | undefined;

  const error = (e: TwilioError) => ({
    code: e.code,
    message: e.message ?? `Error ${e.code}`,
    more_info: `https://www.twilio.com/docs/errors/${e.code}`,
    status: e.status,
  });

  const app = new Hono();
  const expected = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;
  // The account itself (what `threshold doctor` fetches to check the credentials).
  app.get('/2010-04-01/Accounts/:file', (c) => {
    if (c.req.header('authorization') !== expected || c.req.param('file') !== `${accountSid}.json`)
      return c.json(error({ status: 401, code: 20003, message: 'Authenticate' }), 401);
    return c.json({
      sid: accountSid,
      friendly_name: 'Stand-in account',
      status: 'active',
      type: 'Full',
      owner_account_sid: accountSid,
      date_created: new Date(0).toUTCString(),
      date_updated: new Date(0).toUTCString(),
      uri: `/2010-04-01/Accounts/${accountSid}.json`,
    });
  });
  app.post('/2010-04-01/Accounts/:sid/Messages.json', async (c) => {
    if (c.req.header('authorization') !== expected || c.req.param('sid') !== accountSid)
      return c.json(error({ status: 401, code: 20003, message: 'Authenticate' }), 401);
    const form = await c.req.parseBody({ all: true });
    // Slow after reading the request, as a Twilio that got it: a client that gives up meanwhile
    // cannot know whether the text was accepted.
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const one = (name: string) => {
      const v = form[name];
      return typeof v === 'string' ? v : Array.isArray(v) ? String(v[0]) : undefined;
    };
    const to = one('To') ?? '';
    attempts.set(to, (attempts.get(to) ?? 0) + 1);
    const media = form.MediaUrl;
    const mediaUrls = (Array.isArray(media) ? media : media ? [media] : []).map(String);
    const from = one('From');
    const body = one('Body') ?? '';

    const fail = (e: TwilioError) =>
      c.json(
        error(e),
        e.status as 400,
        e.retryAfter === undefined ? {} : { 'retry-after': String(e.retryAfter) },
      );
    if (failures && failures.left > 0) {
      failures.left--;
      return fail(failures.error);
    }
    const scripted = failing.get(to);
    if (scripted) return fail(scripted);
    if (!to)
      return c.json(
        error({ status: 400, code: 21604, message: "A 'To' phone number is required." }),
        400,
      );
    if (!/^\+[1-9]\d{6,14}$/.test(to))
      return c.json(
        error({
          status: 400,
          code: 21211,
          message: `The 'To' number ${to} is not a valid phone number.`,
        }),
        400,
      );
    if (!from)
      return c.json(
        error({ status: 400, code: 21603, message: "A 'From' phone number is required." }),
        400,
      );
    if (!body && mediaUrls.length === 0)
      return c.json(error({ status: 400, code: 21602, message: 'Message body is required.' }), 400);
    if (body.length > 1600)
      return c.json(
        error({
          status: 400,
          code: 21617,
          message: 'The concatenated message body exceeds the 1600 character limit.',
        }),
        400,
      );

    const sid = `SM${randomBytes(16).toString('hex')}`;
    const statusCallback = one('StatusCallback');
    const message: StandinMessage = { sid, to, from, body, mediaUrls, at: Date.now() };
    if (statusCallback) message.statusCallback = statusCallback;
    accepted.push(message);
    for (const l of listeners) l();
    if (statusCallback && deliverTo) {
      const target = deliverTo;
      setTimeout(async () => {
        await standin.sendStatus(message, 'sent', target).catch(() => {});
        await standin.sendStatus(message, 'delivered', target).catch(() => {});
      }, 5);
    }
    const now = new Date().toUTCString().replace('GMT', '+0000');
    return c.json(
      {
        account_sid: accountSid,
        api_version: '2010-04-01',
        body,
        date_created: now,
        date_sent: null,
        date_updated: now,
        direction: 'outbound-api',
        error_code: null,
        error_message: null,
        from,
        messaging_service_sid: null,
        num_media: String(mediaUrls.length),
        num_segments: String(Math.max(1, Math.ceil(body.length / 153))),
        price: null,
        price_unit: 'USD',
        sid,
        status: 'queued',
        subresource_uris: {
          media: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}/Media.json`,
        },
        to,
        uri: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}.json`,
      },
      201,
    );
  });

  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: options.port ?? 0 }, () =>
      resolve(s),
    );
    s.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const standin: Standin = {
    url: `http://127.0.0.1:${port}`,
    accountSid,
    authToken,
    messages: () => [...accepted],
    attempts: (to) => attempts.get(to) ?? 0,
    waitFor(what, done, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (!done([...accepted])) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve([...accepted]);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          const seen = accepted.map((m) => `${m.from}->${m.to}: ${m.body}`).join('\n  ');
          reject(new Error(`stand-in: timed out waiting for ${what}; it has:\n  ${seen}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    failNext(n, e) {
      failures = { left: n, error: e };
    },
    failFor(to, e) {
      failing.set(to, e);
    },
    delay(ms) {
      delayMs = ms;
    },
    autoStatus(target) {
      deliverTo = target;
    },
    async sendStatus(message, status, target, errorCode) {
      if (!message.statusCallback) throw new Error(`text ${message.sid} has no StatusCallback`);
      const params: Record<string, string> = {
        AccountSid: accountSid,
        ApiVersion: '2010-04-01',
        From: message.from,
        MessageSid: message.sid,
        MessageStatus: status,
        SmsSid: message.sid,
        SmsStatus: status,
        To: message.to,
      };
      if (errorCode !== undefined) params.ErrorCode = String(errorCode);
      const res = await postSigned(
        target(message.statusCallback),
        message.statusCallback,
        authToken,
        params,
      );
      return res.status;
    },
    reset() {
      failures = undefined;
      failing = new Map();
      delayMs = 0;
      deliverTo = undefined;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
  return standin;
}
