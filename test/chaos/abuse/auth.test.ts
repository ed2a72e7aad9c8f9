import { createHmac } from 'node:crypto';
import { sign } from 'hono/jwt';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, JWT_SECRET, useTestNode } from '../../helpers/node.ts';
import { connect, UpgradeRefusedError } from '../../helpers/ws-client.ts';
import { figures } from '../chaos.ts';

/**
 * Nobody gets in who should not: missing, expired, not-yet-valid, wrong-secret, wrong-algorithm
 * and malformed tokens are refused on every door (HTTP publish, history, admin routes, the
 * WebSocket upgrade), and a valid member cannot reach a room it is not in.
 */

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

/** A JWT built by hand, so the header can say anything (alg none, HS512, a bad typ). */
function handMade(header: unknown, payload: unknown, secret = JWT_SECRET, alg = 'sha256'): string {
  const data = `${b64(header)}.${b64(payload)}`;
  return `${data}.${createHmac(alg, secret).update(data).digest('base64url')}`;
}

async function badTokens(): Promise<Record<string, string>> {
  const sub = 'user:alice';
  const valid = await sign({ sub }, JWT_SECRET, 'HS256');
  return {
    expired: await sign({ sub, exp: now() - 60 }, JWT_SECRET, 'HS256'),
    'not yet valid (nbf)': await sign({ sub, nbf: now() + 3600 }, JWT_SECRET, 'HS256'),
    'issued in the future (iat)': await sign({ sub, iat: now() + 3600 }, JWT_SECRET, 'HS256'),
    'wrong secret': await sign({ sub }, 'not-the-secret', 'HS256'),
    'the admin token as secret': await sign({ sub }, ADMIN_TOKEN, 'HS256'),
    'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub })}.`,
    'alg HS512': handMade({ alg: 'HS512', typ: 'JWT' }, { sub }, JWT_SECRET, 'sha512'),
    'alg HS256 claimed, signed HS512': handMade(
      { alg: 'HS256', typ: 'JWT' },
      { sub },
      JWT_SECRET,
      'sha512',
    ),
    'alg RS256': handMade({ alg: 'RS256', typ: 'JWT' }, { sub }),
    'signature cut': valid.slice(0, valid.lastIndexOf('.') + 5),
    'payload swapped': `${valid.split('.')[0]}.${b64({ sub: 'user:mallory' })}.${valid.split('.')[2]}`,
    'sub not a member id': await sign({ sub: 'root' }, JWT_SECRET, 'HS256'),
    'sub missing': await sign({ name: 'alice' }, JWT_SECRET, 'HS256'),
    'sub a number': await sign({ sub: 42 }, JWT_SECRET, 'HS256'),
    'two parts': valid.split('.').slice(0, 2).join('.'),
    garbage: 'a.b.c',
    'not base64': '!!!.???.***',
    huge: `${'A'.repeat(8000)}.${'B'.repeat(8000)}.C`,
  };
}

/** Wrong admin tokens of every length around the real one's. */
const WRONG_ADMIN = [
  'a',
  ADMIN_TOKEN.slice(0, -1),
  `${ADMIN_TOKEN}x`,
  ADMIN_TOKEN.toUpperCase(),
  `${ADMIN_TOKEN.slice(0, -1)}X`,
  'x'.repeat(ADMIN_TOKEN.length),
  'x'.repeat(4096),
  `${ADMIN_TOKEN}\u00e9`,
];

describe('auth', () => {
  const node = useTestNode({ name: 'auth' });
  let tokens: Record<string, string>;
  let alice: string;
  let refused = 0;

  beforeAll(async () => {
    tokens = await badTokens();
    alice = await sign({ sub: 'user:alice' }, JWT_SECRET, 'HS256');
  });

  const call = (method: string, path: string, token: string | undefined, body?: unknown) =>
    fetch(`${node().url}${path}`, {
      method,
      headers: {
        'content-type': 'application/json',
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  async function expectStatus(res: Response, status: number, code: string) {
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ status, code });
    refused++;
  }

  it('refuses missing and bad tokens on publish, history and the WebSocket upgrade (401 problem+json)', async () => {
    await node().createRoom('ours', ['user:alice']);
    const cases: [string, string | undefined][] = [
      ['missing', undefined],
      ...Object.entries(tokens),
    ];
    for (const [what, token] of cases) {
      const publish = await call('POST', '/v1/rooms/ours/messages', token, { body: 'hi' });
      expect(publish.status, `publish with ${what}`).toBe(401);
      await expectStatus(publish, 401, 'unauthorized');
      const history = await call('GET', '/v1/rooms/ours/messages?since=0', token);
      expect(history.status, `history with ${what}`).toBe(401);
      await expectStatus(history, 401, 'unauthorized');
      const ws = await connect(node().wsUrl, token).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(ws, `WebSocket with ${what}`).toBeInstanceOf(UpgradeRefusedError);
      expect((ws as UpgradeRefusedError).status).toBe(401);
      expect(JSON.parse((ws as UpgradeRefusedError).body)).toMatchObject({ code: 'unauthorized' });
      refused++;
    }
    // Nothing got in: the room is as empty as it started.
    const room = (await (await node().admin('GET', '/v1/rooms/ours')).json()) as { seq: number };
    expect(room.seq).toBe(0);
    // The error never echoes the token back.
    const res = await call('GET', '/v1/rooms/ours/messages', tokens['wrong secret']);
    expect(await res.text()).not.toContain(tokens['wrong secret']?.split('.')[2] ?? '');
  });

  it('keeps a valid member out of rooms it is not in, and off admin routes (403)', async () => {
    await node().createRoom('theirs', ['user:bob']);
    await expectStatus(
      await call('POST', '/v1/rooms/theirs/messages', alice, { body: 'let me in' }),
      403,
      'forbidden',
    );
    await expectStatus(await call('GET', '/v1/rooms/theirs/messages', alice), 403, 'forbidden');
    await expectStatus(
      await call('POST', '/v1/rooms/theirs/messages', alice, { body: 'x', sender: 'user:bob' }),
      403,
      'forbidden',
    );
    for (const [method, path] of [
      ['GET', '/v1/rooms'],
      ['PUT', '/v1/rooms/theirs/members/user:alice'],
      ['DELETE', '/v1/rooms/theirs'],
      ['GET', '/v1/cluster'],
    ] as const) {
      const res = await call(method, path, alice);
      expect(res.status, `${method} ${path}`).toBe(403);
      await expectStatus(res, 403, 'forbidden');
    }
    // A member's POST /v1/rooms starts a conversation of its own; it cannot name the room.
    await expectStatus(
      await call('POST', '/v1/rooms', alice, { id: 'mine' }),
      400,
      'invalid_request',
    );

    const ws = await connect(node().wsUrl, alice);
    ws.send({ type: 'subscribe', room: 'theirs', since: 0 });
    expect(await ws.next()).toMatchObject({ type: 'error', code: 'forbidden', room: 'theirs' });
    ws.send({ type: 'publish', room: 'theirs', body: 'sneaky', id: 'p1' });
    expect(await ws.next()).toMatchObject({ type: 'error', code: 'forbidden', id: 'p1' });
    refused += 2;
    const theirs = (await (await node().admin('GET', '/v1/rooms/theirs')).json()) as {
      seq: number;
      members: number;
    };
    expect(theirs.seq).toBe(0);
    const members = (await (await node().admin('GET', '/v1/rooms/theirs/members')).json()) as {
      members: string[];
    };
    expect(members.members).toEqual(['user:bob']);
  });

  it('refuses every wrong admin token, whatever its length: a prefix, an extension, another case, one character off', async () => {
    for (const wrong of WRONG_ADMIN) {
      const res = await call('GET', '/v1/rooms', wrong);
      expect(res.status, `admin token ${JSON.stringify(wrong.slice(0, 20))}…`).toBe(401);
      await expectStatus(res, 401, 'unauthorized');
    }
    expect((await call('GET', '/v1/rooms', ADMIN_TOKEN)).status).toBe(200);
    figures('auth', { refused: refused + WRONG_ADMIN.length, 'accepted-wrongly': 0 });
  });
});
