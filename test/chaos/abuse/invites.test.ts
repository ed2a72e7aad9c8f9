import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { signUp, testPhone } from '../../helpers/accounts.ts';
import { as, startTestNode, type TestNode } from '../../helpers/node.ts';
import { createTestDatabase } from '../../helpers/postgres.ts';
import { figures } from '../chaos.ts';

/**
 * Invites under attack: SQL in every field, the path and the query; flooding phones with
 * invite texts; and someone else's invite id. Against the machine's Postgres (each test its
 * own database), where several nodes would share the invites.
 */

async function nodeWith(invites: Record<string, unknown> = {}) {
  const db = await createTestDatabase();
  onTestFinished(() => db.drop());
  const node = await startTestNode({
    name: 'invites-abuse',
    overrides: { databaseUrl: db.url, invites },
  });
  return { node, databaseUrl: db.url };
}

/** A request to `node` with `token` as the bearer credential (helpers/node.ts `as`). */
const call = (node: TestNode, method: string, path: string, token: string, body?: unknown) =>
  as(node, token)(method, path, body);

async function query<T>(databaseUrl: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

const PAYLOADS = [
  "'; DROP TABLE invites; --",
  "Robert'); DROP TABLE connections;--",
  "' OR '1'='1",
  '1; DELETE FROM users',
  "x' UNION SELECT value FROM auth_settings --",
  '$1',
  '\\',
];

describe('invites under attack', () => {
  it('SQL injection through phone, first, last, the :id path and the role query changes nothing', async () => {
    const { node, databaseUrl } = await nodeWith();
    const ada = await signUp(node, testPhone());
    const bobPhone = testPhone();
    const bob = await signUp(node, bobPhone);

    const answers: number[] = [];
    for (const p of PAYLOADS) {
      answers.push((await call(node, 'POST', '/v1/invites', ada.token, { phone: p })).status);
      answers.push(
        (await call(node, 'POST', '/v1/invites', ada.token, { phone: `+1201555${p}` })).status,
      );
      answers.push(
        (await call(node, 'GET', `/v1/invites?role=${encodeURIComponent(p)}`, ada.token)).status,
      );
    }
    expect(new Set(answers)).toEqual(new Set([400]));

    const paths: number[] = [];
    for (const p of PAYLOADS) {
      const id = encodeURIComponent(p);
      for (const [method, path] of [
        ['GET', `/v1/invites/${id}`],
        ['POST', `/v1/invites/${id}/accept`],
        ['POST', `/v1/invites/${id}/reject`],
        ['POST', `/v1/invites/${id}/ack`],
        ['DELETE', `/v1/invites/${id}`],
      ] as const)
        paths.push((await call(node, method, path, bob.token)).status);
    }
    // Each is an id nobody has: 404, as for any invite that is not yours.
    expect(new Set(paths)).toEqual(new Set([404]));

    // Names are stored as they were typed, to the byte.
    const [first, last] = [PAYLOADS[1] as string, PAYLOADS[4] as string];
    const sent = await call(node, 'POST', '/v1/invites', ada.token, {
      phone: bobPhone,
      first,
      last,
    });
    expect(sent.status).toBe(201);
    const { id } = (await sent.json()) as { id: string };
    expect((await call(node, 'POST', `/v1/invites/${id}/accept`, bob.token)).status).toBe(200);

    const rows = await query<Record<string, string>>(
      databaseUrl,
      'SELECT id, inviter, invitee, first, last, state FROM invites',
    );
    expect(rows).toEqual([
      {
        id,
        inviter: ada.member,
        invitee: bob.member.slice('user:'.length),
        first,
        last,
        state: 'accepted',
      },
    ]);
    const tables = await query<{ n: number }>(
      databaseUrl,
      "SELECT count(*)::int AS n FROM pg_tables WHERE tablename IN ('users', 'phone_codes', 'auth_settings', 'schema_migrations', 'invites', 'connections')",
    );
    expect(tables[0]).toEqual({ n: 6 });
    const users = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM users');
    expect(users[0]).toEqual({ n: 2 });
    const connections = await query<{ n: number }>(
      databaseUrl,
      'SELECT count(*)::int AS n FROM connections',
    );
    expect(connections[0]).toEqual({ n: 2 });
    figures('invites sql injection', { requests: answers.length + paths.length, accepted: 0 });
  });

  it('invite flooding: invites.perHour per member over all phones, then 429 with Retry-After and no more texts', async () => {
    const { node } = await nodeWith({ perHour: 5 });
    const ada = await signUp(node, testPhone());
    const phones = Array.from({ length: 12 }, () => testPhone());
    const flood = await Promise.all(
      phones.map((phone) => call(node, 'POST', '/v1/invites', ada.token, { phone })),
    );
    const counts: Record<number, number> = {};
    for (const r of flood) counts[r.status] = (counts[r.status] ?? 0) + 1;
    expect(counts).toEqual({ 201: 5, 429: 7 });
    for (const r of flood.filter((r) => r.status === 429)) {
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await r.json()).toMatchObject({ code: 'rate_limited' });
    }
    const { texts } = (await (await node.admin('GET', '/v1/dev/outbox')).json()) as {
      texts: { to: string; body: string }[];
    };
    expect(texts.filter((t) => phones.includes(t.to) && /invited you/.test(t.body))).toHaveLength(
      5,
    );
    // Another member has an allowance of their own.
    const bob = await signUp(node, testPhone());
    const other = await call(node, 'POST', '/v1/invites', bob.token, { phone: testPhone() });
    expect(other.status).toBe(201);
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toMatch(/threshold_rate_limited_total\{limit="invite"\} 7/);
    figures('invites flooding', { sent: 12, texted: 5, refused: 7 });
  });

  it("someone else's invite id is 404 on every route, and the invite is untouched", async () => {
    const { node } = await nodeWith();
    const ada = await signUp(node, testPhone());
    const bobPhone = testPhone();
    const bob = await signUp(node, bobPhone);
    const mallory = await signUp(node, testPhone());
    const { id } = (await (
      await call(node, 'POST', '/v1/invites', ada.token, { phone: bobPhone })
    ).json()) as { id: string };

    const answers: number[] = [];
    for (const token of [mallory.token, await node.token('user:nobody')]) {
      for (const [method, path] of [
        ['GET', `/v1/invites/${id}`],
        ['POST', `/v1/invites/${id}/accept`],
        ['POST', `/v1/invites/${id}/reject`],
        ['POST', `/v1/invites/${id}/ack`],
        ['DELETE', `/v1/invites/${id}`],
      ] as const) {
        const r = await call(node, method, path, token);
        answers.push(r.status);
        // The same answer as for an id nobody has: nothing tells them it exists.
        const unknown = await call(node, method, path.replace(id, '0'.repeat(26)), token);
        expect(await r.json()).toMatchObject({ code: 'not_found' });
        expect(unknown.status).toBe(404);
      }
    }
    expect(new Set(answers)).toEqual(new Set([404]));
    const still = await call(node, 'GET', `/v1/invites/${id}`, bob.token);
    expect(await still.json()).toMatchObject({ id, state: 'pending' });
    figures('invites other ids', { requests: answers.length, accepted: 0 });
  });
});
