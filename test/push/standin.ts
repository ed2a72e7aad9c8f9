/**
 * A local stand-in for a Web Push service (what a browser vendor runs), for tests: each test
 * "browser" gets a real P-256 key pair and auth secret, and an endpoint `POST /push/<id>` here.
 * A request must carry a valid VAPID `Authorization: vapid t=<ES256 JWT>, k=<public key>`
 * (signature, `aud` = this origin, `exp` in the future, `sub` = the expected subject); its
 * aes128gcm body is decrypted with the browser's private key, as the browser would.
 */
import { createECDH, createPublicKey, type ECDH, randomBytes, verify } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as ece from 'http_ece';

export interface Received {
  endpoint: string;
  /** The decrypted payload, parsed. */
  payload: Record<string, unknown>;
  /** Its size in bytes, decrypted. */
  bytes: number;
  ttl: string | undefined;
  urgency: string | undefined;
  /** The VAPID public key the request was signed with (`k=`). */
  vapidKey: string;
}

/** A browser's subscription, as `PushSubscription.toJSON()` gives it, and how to answer it. */
export interface Browser {
  endpoint: string;
  keys: { p256dh: string; auth: string };
  /** The status the push service answers for this endpoint (201 unless the test says). */
  answer: number;
  /** Sent with `answer` as `Retry-After` (seconds). */
  retryAfter?: number;
}

export interface PushStandin {
  readonly url: string;
  /** Pushes accepted and decrypted, oldest first. */
  readonly received: Received[];
  /** Requests refused (bad VAPID, undecryptable), with why. */
  readonly refused: { endpoint: string; reason: string }[];
  /** Requests per endpoint, answered whatever way. */
  attempts(endpoint: string): number;
  /** A new browser subscription on this service. */
  subscribe(): Browser;
  close(): Promise<void>;
}

export async function startPushStandin(options: { subject: string }): Promise<PushStandin> {
  const browsers = new Map<string, { browser: Browser; ecdh: ECDH; auth: Buffer }>();
  const received: Received[] = [];
  const refused: { endpoint: string; reason: string }[] = [];
  const attempts = new Map<string, number>();
  let url = '';

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const endpoint = `${url}${req.url ?? ''}`;
      attempts.set(endpoint, (attempts.get(endpoint) ?? 0) + 1);
      const entry = browsers.get(req.url ?? '');
      if (req.method !== 'POST' || !entry) return void res.writeHead(404).end();
      const vapid = checkVapid(req, url, options.subject);
      if ('reason' in vapid) {
        refused.push({ endpoint, reason: vapid.reason });
        return void res.writeHead(403).end(vapid.reason);
      }
      const { browser, ecdh, auth } = entry;
      if (browser.answer >= 300) {
        const headers = browser.retryAfter ? { 'retry-after': String(browser.retryAfter) } : {};
        return void res.writeHead(browser.answer, headers).end();
      }
      try {
        if (req.headers['content-encoding'] !== 'aes128gcm')
          throw new Error(`content-encoding ${req.headers['content-encoding']}`);
        const plain = ece.decrypt(Buffer.concat(chunks), {
          version: 'aes128gcm',
          privateKey: ecdh,
          authSecret: auth,
        });
        received.push({
          endpoint,
          payload: JSON.parse(plain.toString('utf8')) as Record<string, unknown>,
          bytes: plain.length,
          ttl: header(req, 'ttl'),
          urgency: header(req, 'urgency'),
          vapidKey: vapid.key,
        });
      } catch (err) {
        refused.push({ endpoint, reason: `cannot decrypt: ${(err as Error).message}` });
        return void res.writeHead(400).end();
      }
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    received,
    refused,
    attempts: (endpoint) => attempts.get(endpoint) ?? 0,
    subscribe() {
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      const auth = randomBytes(16);
      const path = `/push/${randomBytes(8).toString('hex')}`;
      const browser: Browser = {
        endpoint: `${url}${path}`,
        keys: {
          p256dh: ecdh.getPublicKey().toString('base64url'),
          auth: auth.toString('base64url'),
        },
        answer: 201,
      };
      browsers.set(path, { browser, ecdh, auth });
      return browser;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** RFC 8292: `vapid t=<JWT>, k=<key>`; the JWT's ES256 signature, aud, exp and sub. */
function checkVapid(
  req: IncomingMessage,
  origin: string,
  subject: string,
): { key: string } | { reason: string } {
  const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(header(req, 'authorization') ?? '');
  if (!m) return { reason: 'no vapid authorization' };
  const [, jwt = '', key = ''] = m;
  const [head = '', body = '', sig = ''] = jwt.split('.');
  const point = Buffer.from(key, 'base64url');
  if (point.length !== 65 || point[0] !== 4) return { reason: 'k is not a P-256 point' };
  const publicKey = createPublicKey({
    key: {
      kty: 'EC',
      crv: 'P-256',
      x: point.subarray(1, 33).toString('base64url'),
      y: point.subarray(33).toString('base64url'),
    },
    format: 'jwk',
  });
  const signed = verify(
    'sha256',
    Buffer.from(`${head}.${body}`),
    { key: publicKey, dsaEncoding: 'ieee-p1363' },
    Buffer.from(sig, 'base64url'),
  );
  if (!signed) return { reason: 'bad JWT signature' };
  const alg = (JSON.parse(Buffer.from(head, 'base64url').toString()) as { alg?: string }).alg;
  if (alg !== 'ES256') return { reason: `JWT alg ${alg}` };
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as {
    aud?: string;
    exp?: number;
    sub?: string;
  };
  if (claims.aud !== origin) return { reason: `aud ${claims.aud}, not ${origin}` };
  if (!claims.exp || claims.exp * 1000 <= Date.now()) return { reason: 'expired JWT' };
  if (claims.sub !== subject) return { reason: `sub ${claims.sub}, not ${subject}` };
  return { key };
}

/** Registers `browser` as a push subscription of `member` on `node` (PUT /v1/me/push): 201. */
export async function subscribePush(
  node: { url: string; token(member: string): Promise<string> },
  member: string,
  browser: Pick<Browser, 'endpoint' | 'keys'>,
): Promise<void> {
  const res = await fetch(`${node.url}/v1/me/push`, {
    method: 'PUT',
    headers: {
      authorization: `Bearer ${await node.token(member)}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ endpoint: browser.endpoint, keys: browser.keys }),
  });
  if (res.status !== 201) throw new Error(`PUT /v1/me/push: ${res.status} ${await res.text()}`);
}
