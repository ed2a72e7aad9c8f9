import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { codeFor, post, signUp, testPhone } from '../../helpers/accounts.ts';
import { admin, type MeshNode, startMesh } from '../../helpers/mesh.ts';
import { startTestNode } from '../../helpers/node.ts';
import { createTestDatabase } from '../../helpers/postgres.ts';
import { connect, UpgradeRefusedError } from '../../helpers/ws-client.ts';
import { figures } from '../chaos.ts';

/**
 * Sign-in by SMS code under attack: guessing codes, flooding sends, telling known phones from
 * unknown ones, using tokens after logout-all, and SQL in every field. Against the machine's
 * Postgres (each test its own database), where several nodes share accounts.
 */

async function database() {
  const db = await createTestDatabase();
  onTestFinished(() => db.drop());
  return db.url;
}

async function nodeWith(overrides: Record<string, unknown> = {}) {
  const databaseUrl = await database();
  const node = await startTestNode({
    name: 'accounts-abuse',
    overrides: { databaseUrl, ...overrides },
  });
  return { node, databaseUrl };
}

const statuses = (responses: Response[]) => {
  const counts: Record<number, number> = {};
  for (const r of responses) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
};

describe('accounts under attack', () => {
  it('code brute force: 30 guesses at once are stopped at 5 checks, and the right code is void after', async () => {
    const { node } = await nodeWith();
    const phone = testPhone();
    expect((await post(node, '/v1/auth/phone/start', { phone })).status).toBe(202);
    const code = await codeFor(node, phone);
    const guesses = Array.from({ length: 30 }, (_, i) =>
      String((Number(code) + 1 + i) % 1_000_000).padStart(6, '0'),
    );
    const answers = await Promise.all(
      guesses.map((guess) => post(node, '/v1/auth/phone/verify', { phone, code: guess })),
    );
    // Checks are serialised on the phone's row: 4 wrong answers, the fifth ends the code.
    expect(statuses(answers)).toEqual({ 401: 4, 429: 26 });
    const right = await post(node, '/v1/auth/phone/verify', { phone, code });
    expect(right.status).toBe(429);
    const malformed = ["' OR '1'='1", '', '1'.repeat(17), '12345', 'abcdef'];
    for (const bad of malformed)
      expect([400, 429]).toContain(
        (await post(node, '/v1/auth/phone/verify', { phone, code: bad })).status,
      );
    figures('accounts brute force', { guesses: 30 + malformed.length, accepted: 0 });
  });

  it('send flooding: 5 codes per phone per 10 minutes, starts per address and in total per hour, other countries refused', async () => {
    const { node } = await nodeWith({ auth: { startsPerAddressPerHour: 12, startsPerHour: 1000 } });
    const phone = testPhone();
    const flood = await Promise.all(
      Array.from({ length: 10 }, () => post(node, '/v1/auth/phone/start', { phone })),
    );
    expect(statuses(flood)).toEqual({ 202: 5, 429: 5 });
    for (const r of flood.filter((r) => r.status === 429))
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    // 10 starts so far from this address: 2 more go through, the next ones are refused.
    const others = [];
    for (let i = 0; i < 4; i++)
      others.push(await post(node, '/v1/auth/phone/start', { phone: testPhone() }));
    expect(others.map((r) => r.status)).toEqual([202, 202, 429, 429]);
    const outbox = (await (await node.admin('GET', '/v1/dev/outbox')).json()) as {
      texts: unknown[];
    };
    expect(outbox.texts).toHaveLength(7);

    const total = (await nodeWith({ auth: { startsPerHour: 3 } })).node;
    const sent = [];
    for (let i = 0; i < 5; i++)
      sent.push((await post(total, '/v1/auth/phone/start', { phone: testPhone() })).status);
    expect(sent).toEqual([202, 202, 202, 429, 429]);

    for (const foreign of ['+447400123456', '+18095551234', '+33612345678']) {
      const r = await post(total, '/v1/auth/phone/start', { phone: foreign });
      expect(r.status, foreign).toBe(403);
    }
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toMatch(/threshold_auth_refused_total\{reason="phone_limit"\} 5/);
    expect(metrics).toMatch(/threshold_auth_refused_total\{reason="address_limit"\} 2/);
    expect(await (await fetch(`${total.url}/metrics`)).text()).toMatch(
      /threshold_auth_refused_total\{reason="country"\} 3/,
    );
  });

  it('enumeration: start and verify answer alike for a signed-up phone and an unknown one', async () => {
    const { node } = await nodeWith();
    const known = testPhone();
    await signUp(node, known, { first: 'Known', last: 'User' });
    let unknown = testPhone();
    while (unknown === known) unknown = testPhone();

    const shape = async (r: Response, phone: string) => ({
      status: r.status,
      type: r.headers.get('content-type'),
      body: (await r.text()).replaceAll(phone, '<phone>'),
    });
    const startKnown = await shape(
      await post(node, '/v1/auth/phone/start', { phone: known }),
      known,
    );
    const startUnknown = await shape(
      await post(node, '/v1/auth/phone/start', { phone: unknown }),
      unknown,
    );
    expect(startKnown).toEqual(startUnknown);
    expect(startKnown.status).toBe(202);
    const wrong = async (phone: string) =>
      shape(await post(node, '/v1/auth/phone/verify', { phone, code: '999999' }), phone);
    expect(await wrong(known)).toEqual(await wrong(unknown));
    // Both get a token with the right code: a new phone is signed up, a known one signed in.
    const a = await post(node, '/v1/auth/phone/verify', {
      phone: known,
      code: await codeFor(node, known, 2),
    });
    const b = await post(node, '/v1/auth/phone/verify', {
      phone: unknown,
      code: await codeFor(node, unknown),
    });
    expect([a.status, b.status]).toEqual([200, 200]);
  });

  it('SQL injection through phone, first, last and code changes nothing', async () => {
    const { node, databaseUrl } = await nodeWith();
    const payloads = [
      "'; DROP TABLE users; --",
      "Robert'); DROP TABLE users;--",
      "' OR '1'='1",
      '1; DELETE FROM phone_codes',
      "x' UNION SELECT value FROM auth_settings --",
      '$1',
      '\\',
    ];
    const answers: number[] = [];
    for (const p of payloads) {
      answers.push((await post(node, '/v1/auth/phone/start', { phone: p })).status);
      answers.push((await post(node, '/v1/auth/phone/start', { phone: `+1201555${p}` })).status);
      answers.push((await post(node, '/v1/auth/phone/verify', { phone: p, code: p })).status);
    }
    expect(new Set(answers)).toEqual(new Set([400]));

    const phone = testPhone();
    const [first, last] = [payloads[1] as string, payloads[4] as string];
    const { member } = await signUp(node, phone, { first, last });
    const codeAnswers = [];
    for (const p of payloads.slice(0, 3)) {
      codeAnswers.push((await post(node, '/v1/auth/phone/verify', { phone, code: p })).status);
    }
    // Too long for a code (400) or simply wrong (401): never a token.
    for (const status of codeAnswers) expect([400, 401]).toContain(status);

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT id, first, last, phone, state FROM users');
      expect(rows).toEqual([
        { id: member.slice('user:'.length), first, last, phone, state: 'verified' },
      ]);
      const tables = await client.query(
        "SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ('users', 'phone_codes', 'auth_settings', 'schema_migrations')",
      );
      expect(tables.rows[0]).toEqual({ n: 4 });
    } finally {
      await client.end();
    }
    figures('accounts sql injection', {
      requests: answers.length + codeAnswers.length,
      accepted: 0,
    });
  });

  it('logout-all: the tokens are refused on every node within a second, open WebSockets closed', async () => {
    const databaseUrl = await database();
    const mesh = await startMesh(2, { THRESHOLD_DATABASE_URL: databaseUrl });
    const [a, b] = mesh.nodes as [MeshNode, MeshNode];
    const via = (n: MeshNode) => ({
      url: n.url,
      admin: (method: string, path: string, body?: unknown) => admin(n, method, path, body),
    });
    const phone = testPhone();
    const { token, member } = await signUp(via(a), phone);
    // Accounts are shared: the same phone signs in on the other node as the same member.
    const again = await signUp(via(b), phone);
    expect(again.member).toBe(member);
    await admin(a, 'POST', '/v1/rooms', { id: 'revoked' });
    await admin(a, 'PUT', `/v1/rooms/revoked/members/${member}`);
    const me = (n: MeshNode, t: string) =>
      fetch(`${n.url}/v1/me/rooms`, { headers: { authorization: `Bearer ${t}` } });
    expect([(await me(a, token)).status, (await me(b, token)).status]).toEqual([200, 200]);
    const open = await connect(b.wsUrl, again.token);
    await open.welcome;

    // Both tokens were issued before the logout, on either node.
    await new Promise((r) => setTimeout(r, 1100));
    const t0 = Date.now();
    const out = await post(a, '/v1/auth/logout-all', {}, token);
    expect(out.status).toBe(200);
    const closed = await open.closed;
    expect(closed.code).toBe(4001);
    for (const t of [token, again.token]) {
      for (const n of [a, b]) {
        const r = await me(n, t);
        expect(r.status, `${n.id}`).toBe(401);
        const refused = await connect(n.wsUrl, t).catch((err: unknown) => err);
        expect(refused).toBeInstanceOf(UpgradeRefusedError);
        expect((refused as UpgradeRefusedError).status).toBe(401);
      }
    }
    const ms = Date.now() - t0;
    expect(ms).toBeLessThan(1000);
    // A new sign-in works again.
    await new Promise((r) => setTimeout(r, 1100));
    const fresh = await signUp(via(b), phone);
    expect((await me(a, fresh.token)).status).toBe(200);
    figures('accounts logout-all', { nodes: 2, refusedWithinMs: ms, wsClose: closed.code });
  });
});
