import { Agent, type OutgoingHttpHeaders } from 'node:http';
import { sign } from 'hono/jwt';
import { expect, it, onTestFinished } from 'vitest';
import { ADMIN_TOKEN, JWT_SECRET } from '../../helpers/node.ts';
import { admin, type MeshNode, startMesh } from '../../helpers/mesh.ts';
import { pool } from '../../helpers/pool.ts';
import { createTestDatabase } from '../../helpers/postgres.ts';
import { standinEnv } from '../../twilio/sms-node.ts';
import { startStandin } from '../../twilio/standin.ts';
import {
  closedWhileIdle,
  isProblem,
  type RawRequest,
  type RawResponse,
  rawRequest,
  Rng,
  memoryMiB,
  seed,
} from './abuse.ts';
import { figures, SHORT } from '../chaos.ts';

/**
 * Every route of DESIGN §5 (and the development SMS routes) takes fuzzed requests from a
 * seeded generator: wrong JSON types, huge strings, deep nesting, invalid UTF-8, wrong or
 * missing content types, odd and oversized headers, bodies over the limit with and without
 * Content-Length. The node must never answer 5xx, every error must be problem+json, and it
 * must still be up, answering, with its memory in bounds, afterwards.
 */

const CASES = SHORT ? 1_000 : 10_000;
const CONCURRENCY = 16;
const MAX_BODY = 65_536;

type BodyKind = 'room' | 'publish' | 'dev' | 'twilio' | 'phone' | 'code' | 'none';
interface Route {
  method: string;
  path: string;
  body: BodyKind;
  /** The Twilio routes go to the node with Twilio credentials, the dev routes to the one without. */
  on: 'twilio' | 'dev';
}

const ROUTES: Route[] = [
  { method: 'POST', path: '/v1/rooms', body: 'room', on: 'twilio' },
  { method: 'GET', path: '/v1/rooms', body: 'none', on: 'twilio' },
  { method: 'GET', path: '/v1/rooms/:room', body: 'none', on: 'twilio' },
  { method: 'DELETE', path: '/v1/rooms/:room', body: 'none', on: 'dev' },
  { method: 'PUT', path: '/v1/rooms/:room/members/:member', body: 'none', on: 'twilio' },
  { method: 'DELETE', path: '/v1/rooms/:room/members/:member', body: 'none', on: 'dev' },
  { method: 'GET', path: '/v1/rooms/:room/members', body: 'none', on: 'twilio' },
  { method: 'POST', path: '/v1/rooms/:room/messages', body: 'publish', on: 'twilio' },
  { method: 'GET', path: '/v1/rooms/:room/messages', body: 'none', on: 'dev' },
  { method: 'GET', path: '/v1/messages/:id', body: 'none', on: 'twilio' },
  { method: 'GET', path: '/v1/cluster', body: 'none', on: 'dev' },
  { method: 'GET', path: '/v1/connect', body: 'none', on: 'twilio' },
  { method: 'GET', path: '/v1/ws', body: 'none', on: 'twilio' },
  { method: 'GET', path: '/metrics', body: 'none', on: 'dev' },
  { method: 'GET', path: '/healthz', body: 'none', on: 'twilio' },
  { method: 'GET', path: '/readyz', body: 'none', on: 'dev' },
  { method: 'POST', path: '/twilio/sms', body: 'twilio', on: 'twilio' },
  { method: 'POST', path: '/twilio/status', body: 'twilio', on: 'twilio' },
  { method: 'POST', path: '/v1/dev/sms', body: 'dev', on: 'dev' },
  { method: 'GET', path: '/v1/dev/outbox', body: 'none', on: 'dev' },
  // Sign-in (the dev node's auth database is a Postgres of the test's own).
  { method: 'POST', path: '/v1/auth/phone/start', body: 'phone', on: 'dev' },
  { method: 'POST', path: '/v1/auth/phone/verify', body: 'code', on: 'dev' },
  { method: 'POST', path: '/v1/auth/logout-all', body: 'none', on: 'twilio' },
];

const ROOM_NUMBER = '+15550009000';

interface Tally {
  cases: number;
  status: Map<number, number>;
  fiveXx: string[];
  nonProblem: string[];
  /** Connections that failed with no answer at all (other than while sending an oversized body). */
  noAnswer: string[];
  /** Requests sent again because the node had closed their idle kept-alive socket. */
  idleRaces: number;
}

it(
  `answers ${CASES} fuzzed requests per route without a 5xx, each error as problem+json`,
  { timeout: 900_000 },
  async () => {
    const standin = await startStandin();
    onTestFinished(() => standin.close());
    // One node with Twilio credentials (webhooks checked), one in SMS development mode (/v1/dev/*).
    const quiet = { THRESHOLD_LOG_LEVEL: 'error' };
    const mesh = await startMesh(1, { ...standinEnv(standin, 4), ...quiet });
    const twilioNode = mesh.pick(0);
    // Sign-in on the machine's Postgres: embedded PGlite alone would take ~300-800 MiB.
    const accounts = await createTestDatabase();
    onTestFinished(() => accounts.drop());
    const devNode = await mesh.add({ ...quiet, THRESHOLD_DATABASE_URL: accounts.url });
    await admin(twilioNode, 'POST', '/v1/rooms', { id: 'fuzz' });
    await admin(twilioNode, 'PUT', '/v1/rooms/fuzz/members/user:alice');
    await admin(twilioNode, 'POST', '/v1/rooms', { id: 'fuzzsms', numbers: [ROOM_NUMBER] });
    await admin(twilioNode, 'PUT', '/v1/rooms/fuzzsms/members/phone:+15550009001');

    const runSeed = seed();
    const rng = new Rng(runSeed);
    const memberToken = await sign({ sub: 'user:alice' }, JWT_SECRET, 'HS256');
    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    onTestFinished(() => agent.destroy());
    const nodes = { twilio: twilioNode, dev: devNode };
    const before = [await memoryMiB(twilioNode.url), await memoryMiB(devNode.url)];

    const tally: Tally = {
      cases: 0,
      status: new Map(),
      fiveXx: [],
      nonProblem: [],
      noAnswer: [],
      idleRaces: 0,
    };
    const started = Date.now();
    for (const route of ROUTES) {
      const cases = Array.from({ length: CASES }, () => fuzzCase(rng, route, memberToken));
      await pool(cases.length, CONCURRENCY, async (i) => {
        const c = cases[i] as FuzzCase;
        const node: MeshNode = nodes[route.on];
        const what = `${c.method} ${c.path.slice(0, 120)} [${c.note}]`;
        let res: RawResponse;
        try {
          res = await rawRequest(node.url, agent, c).catch((err: unknown) => {
            if (!closedWhileIdle(err)) throw err;
            tally.idleRaces++;
            return rawRequest(node.url, agent, c);
          });
        } catch (err) {
          if (!c.oversized)
            tally.noAnswer.push(
              `${what}: ${(err as Error).message} ${JSON.stringify(c.headers).slice(0, 300)}`,
            );
          return;
        } finally {
          tally.cases++;
        }
        tally.status.set(res.status, (tally.status.get(res.status) ?? 0) + 1);
        if (res.status >= 500) tally.fiveXx.push(`${what} → ${res.status} ${res.body}`);
        else if (res.status >= 400 && !isProblem(res, c.method))
          tally.nonProblem.push(
            `${what} → ${res.status} ${res.headers['content-type']} ${res.body.toString().slice(0, 200)}`,
          );
      });
    }
    const seconds = (Date.now() - started) / 1000;

    const alive = [twilioNode, devNode].every((n) => n.process.child.exitCode === null);
    const healthy = await Promise.all(
      [twilioNode, devNode].map((n) => fetch(`${n.url}/healthz`).then((r) => r.status)),
    );
    const after = [await memoryMiB(twilioNode.url), await memoryMiB(devNode.url)];
    const memory = before
      .map((b, n) => `rss:${b.rss}→${after[n]?.rss},heap:${b.heap}→${after[n]?.heap}`)
      .join('/');
    const statuses = [...tally.status.entries()]
      .sort(([a], [b]) => a - b)
      .map(([s, n]) => `${s}:${n}`)
      .join(' ');
    figures('http fuzz', {
      seed: runSeed,
      routes: ROUTES.length,
      cases: tally.cases,
      'cases-per-s': Math.round(tally.cases / seconds),
      '5xx': tally.fiveXx.length,
      'non-problem': tally.nonProblem.length,
      'no-answer': tally.noAnswer.length,
      'resent-after-idle-close': tally.idleRaces,
      crashes: alive ? 0 : 1,
      MiB: memory,
      statuses: statuses.replaceAll(' ', ','),
    });
    expect(tally.fiveXx.slice(0, 5)).toEqual([]);
    expect(tally.nonProblem.slice(0, 5)).toEqual([]);
    expect(tally.noAnswer.slice(0, 5)).toEqual([]);
    expect(alive).toBe(true);
    expect(healthy).toEqual([200, 200]);
    // "Sane": a few hundred MiB at most, not growing with the number of cases.
    expect(Math.max(...after.map((m) => m.rss))).toBeLessThan(400);
  },
);

interface FuzzCase extends RawRequest {
  /** What the generator did, for the failure message. */
  note: string;
  /** A body over the limit: the node may close the connection before it is all sent. */
  oversized: boolean;
}

function fuzzCase(rng: Rng, route: Route, memberToken: string): FuzzCase {
  const notes: string[] = [];
  const headers: OutgoingHttpHeaders = {};
  const auth = authHeader(rng, memberToken, notes);
  if (auth !== undefined) headers.authorization = auth;

  let method = route.method;
  // The upgrade route more often: Hono routes HEAD to GET handlers, ws expects a GET.
  if (rng.chance(route.path === '/v1/ws' ? 0.15 : 0.03)) {
    method = rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']);
    notes.push(`method ${method}`);
  }
  const path = fillPath(rng, route.path, notes) + query(rng, notes);

  let body: Buffer | undefined;
  let chunked: FuzzCase['chunked'];
  let oversized = false;
  const sendsBody = route.body !== 'none' ? !rng.chance(0.05) : rng.chance(0.1);
  if (sendsBody && method !== 'GET' && method !== 'HEAD') {
    const roll = rng.next();
    if (roll < 0.04) {
      chunked = { chunk: Buffer.alloc(16_384, 0x61), chunks: 8 };
      oversized = true;
      notes.push('chunked 128 KiB');
    } else if (roll < 0.08) {
      body = Buffer.alloc(MAX_BODY + 1 + rng.int(100_000), 0x7b);
      oversized = true;
      notes.push(`Content-Length ${body.length}`);
    } else if (roll < 0.12) {
      chunked = { chunk: Buffer.from(JSON.stringify(template(rng, route.body))), chunks: 1 };
      notes.push('chunked small');
    } else {
      body = encodeBody(rng, route.body, notes);
      oversized = body.length > MAX_BODY;
    }
  }
  headers['content-type'] = contentType(rng, route.body, notes);
  if (headers['content-type'] === undefined) delete headers['content-type'];

  oddHeaders(rng, route, headers, body, notes);
  return { method, path, headers, body, chunked, note: notes.join(', '), oversized };
}

function authHeader(rng: Rng, memberToken: string, notes: string[]): string | undefined {
  const roll = rng.next();
  if (roll < 0.6) return `Bearer ${ADMIN_TOKEN}`;
  if (roll < 0.72) return `Bearer ${memberToken}`;
  if (roll < 0.8) {
    notes.push('no auth');
    return undefined;
  }
  notes.push('bad auth');
  return rng.pick([
    `Bearer ${rng.string(rng.int(300))}`,
    `Basic ${Buffer.from('a:b').toString('base64')}`,
    'Bearer',
    `Bearer ${memberToken.slice(0, -3)}xyz`,
    `Bearer ${ADMIN_TOKEN}x`,
    `bearer  ${ADMIN_TOKEN} `,
    `Bearer ${latin1(rng, 40)}`,
    `Bearer a.b.c`,
    `Bearer ${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"user:alice"}').toString('base64url')}.`,
  ]);
}

/** A string of bytes 0x80–0xff (sent as latin1 in a header: invalid UTF-8). */
function latin1(rng: Rng, n: number): string {
  return String.fromCharCode(...Array.from({ length: n }, () => 0x80 + rng.int(128)));
}

const ODD_SEGMENTS = [
  '',
  '%FF%FE',
  '%C0%AF',
  '%ED%A0%80',
  '%',
  '%ZZ',
  '..',
  '%2e%2e%2f',
  'UPPER',
  'user:',
  'phone:+1',
  'phone:+15551234567',
  'user:%00',
  '%F0%9F%92%A9',
  'a'.repeat(65),
  'x'.repeat(3000),
];

function fillPath(rng: Rng, template: string, notes: string[]): string {
  return template.replace(/:(room|member|id)/g, (_, name: string) => {
    if (rng.chance(0.6)) {
      if (name === 'room') return rng.pick(['fuzz', 'fuzzsms', 'nosuchroom', `r${rng.int(50)}`]);
      if (name === 'member') return rng.pick(['user:alice', 'user:bob', 'phone:+15550009001']);
      return rng.pick(['http:fuzz:service:admin:x', 'twilio:SM123', 'nope']);
    }
    const odd = rng.chance(0.7)
      ? rng.pick(ODD_SEGMENTS)
      : encodeURIComponent(rng.string(20, "\u00e9\u4e16ab:/?#[]@!$&'()*+,;= "));
    notes.push(`${name}=${odd.slice(0, 30)}`);
    return odd;
  });
}

function query(rng: Rng, notes: string[]): string {
  if (rng.chance(0.6)) return '';
  const parts: string[] = [];
  const n = 1 + rng.int(3);
  for (let k = 0; k < n; k++) {
    const name = rng.pick(['since', 'limit', 'wait', 'room', 'member', 'token', 'd', 'x']);
    const value = rng.pick([
      '0',
      '-1',
      '1e3',
      '99999999999999999999',
      '%ZZ',
      '%FF',
      'true',
      '',
      'fuzz',
      'fuzz~%2B15550009001~id',
      '1.5',
      'NaN',
      rng.string(rng.int(2000)),
    ]);
    parts.push(`${name}=${value}`);
  }
  const q = `?${parts.join('&')}`;
  notes.push(`query ${q.slice(0, 60)}`);
  return q;
}

function template(rng: Rng, kind: BodyKind): Record<string, unknown> {
  switch (kind) {
    case 'room':
      // Few ids, so the fuzz makes tens of rooms (then 409s), not thousands.
      return {
        id: `fz-${rng.int(40)}`,
        name: 'Fuzz',
        numbers: [`+1555${String(1_000_000 + rng.int(8_999_999))}`],
        settings: { open: true },
      };
    case 'publish':
      return { body: 'hello', media: ['https://example.com/a.png'], sender: 'user:alice' };
    case 'dev':
      return { from: '+15550009001', to: ROOM_NUMBER, body: 'HELP' };
    case 'twilio':
      return {
        MessageSid: `SM${rng.string(32, '0123456789abcdef')}`,
        From: '+15550009001',
        To: ROOM_NUMBER,
        Body: 'hello',
        NumMedia: '0',
        MessageStatus: 'delivered',
      };
    case 'phone':
      return { phone: `+1201555${String(1000 + rng.int(8999))}`, first: 'Ada', last: 'Lovelace' };
    case 'code':
      return { phone: `+1201555${String(1000 + rng.int(8999))}`, code: String(rng.int(1_000_000)) };
    case 'none':
      return {};
  }
}

/** A value of a random JSON type, some of them huge or odd. */
function wrongValue(rng: Rng): unknown {
  return rng.pick<() => unknown>([
    () => rng.int(1e9) - 5e8,
    () => 1e308,
    () => -0.5,
    () => null,
    () => true,
    () => [],
    () => ({}),
    () => [[[['x']]]],
    () => ({ $ne: null }),
    () => 'x'.repeat(rng.int(70_000)),
    () => '\ud800\udfff\ud800',
    () => '\u0000\u0001\u001f',
    () => '\u202e\ufeff',
    () => rng.string(10, '<>"\'&;${}`'),
    () => Array.from({ length: 1000 }, () => 'https://example.com/'),
  ])();
}

function mutate(rng: Rng, value: Record<string, unknown>, notes: string[]): unknown {
  const roll = rng.next();
  const keys = Object.keys(value);
  if (roll < 0.5 && keys.length) {
    const key = rng.pick(keys);
    value[key] = wrongValue(rng);
    notes.push(`${key}: ${typeof value[key]}`);
  } else if (roll < 0.6) {
    value[rng.pick(['__proto__', 'constructor', 'extra', 'seq', 'id'])] = wrongValue(rng);
    notes.push('extra key');
  } else if (roll < 0.7 && keys.length) {
    delete value[rng.pick(keys)];
    notes.push('missing key');
  } else if (roll < 0.8) {
    notes.push('not an object');
    return wrongValue(rng);
  } else {
    notes.push('as sent');
  }
  return value;
}

function deepNesting(rng: Rng, levels: number): string {
  return rng.chance(0.5)
    ? '['.repeat(levels) + ']'.repeat(levels)
    : '{"a":'.repeat(levels) + '1' + '}'.repeat(levels);
}

function encodeBody(rng: Rng, kind: BodyKind, notes: string[]): Buffer {
  const base = kind === 'none' ? { any: 1 } : template(rng, kind);
  const roll = rng.next();
  if (roll < 0.05) {
    const levels = rng.pick([1000, 10_000, 12_000, 100_000]);
    notes.push(`nesting ${levels}`);
    return Buffer.from(deepNesting(rng, levels));
  }
  if (roll < 0.12) {
    notes.push('invalid UTF-8');
    const json = Buffer.from(JSON.stringify(mutate(rng, base, notes)));
    const at = rng.int(json.length + 1);
    const bad = rng.pick([
      Buffer.from([0xff, 0xfe]),
      Buffer.from([0xc0, 0xaf]),
      Buffer.from([0xed, 0xa0, 0x80]),
      Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]),
      rng.bytes(8),
    ]);
    return Buffer.concat([json.subarray(0, at), bad, json.subarray(at)]);
  }
  if (roll < 0.16) {
    notes.push('random bytes');
    return rng.bytes(rng.int(2000));
  }
  if (roll < 0.2) {
    notes.push('truncated');
    const json = JSON.stringify(base);
    return Buffer.from(json.slice(0, rng.int(json.length)));
  }
  if (roll < 0.23) {
    notes.push('empty');
    return Buffer.alloc(0);
  }
  const value = mutate(rng, base, notes);
  if (kind === 'twilio' && rng.chance(0.6) && value && typeof value === 'object') {
    // A form, as Twilio posts it, with fuzzed values.
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(value))
      form.append(k, typeof v === 'string' ? v : JSON.stringify(v));
    notes.push('form');
    return Buffer.from(form.toString());
  }
  return Buffer.from(JSON.stringify(value) ?? 'null');
}

function contentType(rng: Rng, kind: BodyKind, notes: string[]): string | undefined {
  const right = kind === 'twilio' ? 'application/x-www-form-urlencoded' : 'application/json';
  if (rng.chance(0.7)) return right;
  const odd = rng.pick([
    undefined,
    'text/plain',
    'application/json; charset=latin1',
    'application/x-www-form-urlencoded',
    'multipart/form-data',
    'multipart/form-data; boundary=',
    `multipart/form-data; boundary=${rng.string(10)}`,
    'application/xml',
    '*/*',
    ';;;',
    latin1(rng, 12),
    'application/json'.repeat(100),
  ]);
  notes.push(`content-type ${String(odd).slice(0, 40)}`);
  return odd;
}

function oddHeaders(
  rng: Rng,
  route: Route,
  headers: OutgoingHttpHeaders,
  body: Buffer | undefined,
  notes: string[],
): void {
  if (route.body === 'publish' && rng.chance(0.3)) {
    headers['idempotency-key'] = rng.pick([
      rng.string(20),
      '',
      ' ',
      'a b',
      'k'.repeat(129),
      latin1(rng, 10),
      rng.string(8, '\t!~"{}'),
    ]);
    notes.push('Idempotency-Key');
  }
  if (route.body === 'twilio' && rng.chance(0.5)) {
    headers['x-twilio-signature'] = rng.pick([
      Buffer.from(rng.bytes(20)).toString('base64'),
      '',
      'x'.repeat(5000),
      latin1(rng, 28),
    ]);
  }
  if (route.path === '/v1/ws' && rng.chance(0.5)) {
    headers.connection = rng.pick(['Upgrade', 'upgrade, keep-alive', 'keep-alive']);
    headers.upgrade = rng.pick(['websocket', 'WebSocket', 'h2c', 'websocket, h2c']);
    if (rng.chance(0.7))
      headers['sec-websocket-key'] = rng.pick([
        Buffer.from(rng.bytes(16)).toString('base64'),
        'short',
        latin1(rng, 24),
        '',
      ]);
    if (rng.chance(0.7)) headers['sec-websocket-version'] = rng.pick(['13', '8', '0', 'x', '99']);
    if (rng.chance(0.2))
      headers['sec-websocket-extensions'] = rng.pick(['permessage-deflate', ';;;', 'x; y="']);
    if (rng.chance(0.2)) headers['sec-websocket-protocol'] = rng.pick(['a, a', 'chat', ',,']);
    if (rng.chance(0.3))
      headers.origin = rng.pick(['https://evil.example', 'null', latin1(rng, 10)]);
    notes.push(`upgrade ${String(headers.upgrade)} key ${String(headers['sec-websocket-key'])}`);
  }
  const roll = rng.next();
  if (roll < 0.02) {
    headers['x-huge'] = 'h'.repeat(20_000 + rng.int(20_000));
    notes.push('huge header');
  } else if (roll < 0.04 && body) {
    (headers as Record<string, string[]>)['content-length'] = [
      String(body.length),
      String(body.length + 1),
    ];
    notes.push('duplicate Content-Length');
  } else if (roll < 0.06 && body) {
    headers['transfer-encoding'] = 'chunked';
    headers['content-length'] = String(body.length);
    notes.push('Transfer-Encoding and Content-Length');
  } else if (roll < 0.08) {
    headers['x-odd'] = latin1(rng, 200);
    notes.push('latin1 header');
  } else if (roll < 0.1) {
    for (let k = 0; k < 50; k++) headers[`x-many-${k}`] = rng.string(100);
    notes.push('many headers');
  }
}
