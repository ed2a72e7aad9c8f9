import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { postSigned } from './signing.ts';
import { PUBLIC_URL, type Standin, type StandinMessage, startStandin } from './standin.ts';

/**
 * The environment that points a relay node process at the stand-in, Twilio calling it through
 * a proxy at {@link PUBLIC_URL}, with rates fast enough for tests.
 */
export function standinEnv(standin: Standin, maxInFlight: number): NodeJS.ProcessEnv {
  return {
    TWILIO_ACCOUNT_SID: standin.accountSid,
    TWILIO_AUTH_TOKEN: standin.authToken,
    THRESHOLD_TWILIO_API_URL: standin.url,
    THRESHOLD_PUBLIC_URL: PUBLIC_URL,
    THRESHOLD_SMS_RATE_PER_SECOND: '100',
    THRESHOLD_SMS_BURST: '10',
    THRESHOLD_SMS_MAX_IN_FLIGHT: String(maxInFlight),
  };
}

/** A stand-in for the enclosing file, reset before each test. */
export function useStandin(): () => Standin {
  let standin: Standin | undefined;
  beforeAll(async () => {
    standin = await startStandin();
  });
  beforeEach(() => standin?.reset());
  afterAll(async () => {
    await standin?.close();
  });
  return () => {
    if (!standin) throw new Error('useStandin(): the stand-in starts in beforeAll');
    return standin;
  };
}

let counter = 0;
/** A phone number no other test uses. */
export function phone(): string {
  counter++;
  return `+1555${String(counter).padStart(7, '0')}`;
}

export interface SmsNode extends TestNode {
  standin: Standin;
  /** What the proxy does: the public URL Twilio calls → this node's own address. */
  deliverTo(publicUrl: string): string;
  /** A phone texting `to`, as Twilio's signed inbound webhook; resolves with the response. */
  text(
    from: string,
    to: string,
    body: string,
    extra?: { sid?: string; media?: string[]; signature?: string | null },
  ): Promise<Response>;
  /** Creates a room with a number, a name and members. */
  smsRoom(
    id: string,
    number: string,
    members: string[],
    options?: { name?: string; settings?: Record<string, unknown> },
  ): Promise<void>;
  /** The metrics text. */
  metrics(): Promise<string>;
  /** `GET /v1/messages/twilio:<sid>?room=<room>`: the delivery status of an inbound text. */
  status(sid: string, room: string): Promise<MessageStatus>;
}

/** What `GET /v1/messages/:id` answers (the fields SMS tests read). */
export interface MessageStatus {
  id: string;
  channels?: { sms?: Record<string, number> };
}

/**
 * A relay node whose Twilio is the stand-in, reached through a proxy at {@link PUBLIC_URL}.
 * Fast rates and short backoffs; one send in flight, so texts leave in outbox order.
 */
export async function startSmsNode(
  standin: Standin,
  name: string,
  sms: Record<string, unknown> = {},
  /** THRESHOLD_PUBLIC_URL; "" for none (Twilio then signs for the node's own address). */
  publicUrl = PUBLIC_URL,
): Promise<SmsNode> {
  const node = await startTestNode({
    name,
    overrides: {
      publicUrl,
      twilio: {
        accountSid: standin.accountSid,
        authToken: standin.authToken,
        apiUrl: standin.url,
      },
      sms: {
        ratePerSecond: 200,
        burst: 50,
        backoffBaseMs: 20,
        backoffMaxMs: 100,
        maxAttempts: 4,
        maxInFlight: 1,
        ...sms,
      },
    },
  });
  const deliverTo = (url: string) => url.replace(PUBLIC_URL, node.url);
  return {
    ...node,
    standin,
    deliverTo,
    text(from, to, body, extra = {}) {
      const params = inboundText(standin.accountSid, from, to, body, extra);
      return postSigned(
        `${node.url}/twilio/sms`,
        `${publicUrl || node.url}/twilio/sms`,
        standin.authToken,
        params,
        extra.signature,
      );
    },
    async smsRoom(id, number, members, options = {}) {
      const res = await node.admin('POST', '/v1/rooms', {
        id,
        name: options.name ?? id,
        numbers: [number],
        ...(options.settings ? { settings: options.settings } : {}),
      });
      if (res.status !== 201)
        throw new Error(`create room ${id}: ${res.status} ${await res.text()}`);
      for (const m of members) {
        const added = await node.admin('PUT', `/v1/rooms/${id}/members/${m}`);
        if (added.status !== 201) throw new Error(`add ${m}: ${added.status}`);
      }
    },
    async metrics() {
      return (await fetch(`${node.url}/metrics`)).text();
    },
    async status(sid, room) {
      const res = await node.admin('GET', `/v1/messages/twilio:${sid}?room=${room}`);
      return (await res.json()) as MessageStatus;
    },
  };
}

/** The form Twilio posts to the inbound webhook when `from` texts `to`. */
export function inboundText(
  accountSid: string,
  from: string,
  to: string,
  body: string,
  extra: { sid?: string; media?: string[] } = {},
): Record<string, string> {
  const sid = extra.sid ?? `SM${randomBytes(16).toString('hex')}`;
  const params: Record<string, string> = {
    ToCountry: 'US',
    SmsMessageSid: sid,
    NumMedia: String(extra.media?.length ?? 0),
    SmsSid: sid,
    SmsStatus: 'received',
    Body: body,
    To: to,
    NumSegments: '1',
    MessageSid: sid,
    AccountSid: accountSid,
    From: from,
    ApiVersion: '2010-04-01',
  };
  extra.media?.forEach((url, i) => {
    params[`MediaUrl${i}`] = url;
    params[`MediaContentType${i}`] = 'image/jpeg';
  });
  return params;
}

/** Texts the stand-in accepted for `to`. */
export const textsTo = (texts: StandinMessage[], to: string) => texts.filter((t) => t.to === to);

/** A counter's value in Prometheus text (0 when absent). */
export function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
