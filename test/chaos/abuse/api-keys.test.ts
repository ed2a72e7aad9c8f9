import { sign } from 'hono/jwt';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { admin, type MeshNode, startMesh } from '../../helpers/mesh.ts';
import { JWT_SECRET, startTestNode } from '../../helpers/node.ts';
import { createTestDatabase } from '../../helpers/postgres.ts';
import type { UpgradeRefusedError } from '../../helpers/ws-client.ts';
import { connect } from '../../helpers/ws-client.ts';
import { figures } from '../chaos.ts';

/**
 * API keys and tokens under attack: a revoked key and an expired token tried on every node of
 * a mesh that shares one Postgres, and SQL in every field of the key routes.
 */

async function database() {
  const db = await createTestDatabase();
  onTestFinished(() => db.drop());
  return db.url;
}

const withToken = (n: MeshNode, token: string, method: string, path: string, body?: unknown) =>
  fetch(`${n.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

describe('API keys and tokens under attack', () => {
  it('a revoked admin key gets 401 on every node within a second; an expired token everywhere too', async () => {
    const mesh = await startMesh(2, {
      THRESHOLD_DATABASE_URL: await database(),
      THRESHOLD_JWT_SECRET: JWT_SECRET,
    });
    const [a, b] = mesh.nodes as [MeshNode, MeshNode];
    const made = await admin(a, 'POST', '/v1/keys', { name: 'ops', scopes: ['admin'] });
    expect(made.status).toBe(201);
    const { id, key } = (await made.json()) as { id: string; key: string };
    // Keys are shared: made on one node, it creates rooms on the other, and both cache it.
    expect((await withToken(b, key, 'POST', '/v1/rooms', { id: 'keyed-b' })).status).toBe(201);
    expect((await withToken(a, key, 'POST', '/v1/rooms', { id: 'keyed-a' })).status).toBe(201);
    const open = await connect(b.wsUrl, key);
    await open.welcome;

    const t0 = Date.now();
    expect((await admin(a, 'DELETE', `/v1/keys/${id}`)).status).toBe(204);
    const refusedAt: Record<string, number> = {};
    while (Object.keys(refusedAt).length < 2 && Date.now() - t0 < 5000) {
      for (const n of [a, b]) {
        if (refusedAt[n.id] !== undefined) continue;
        const res = await withToken(n, key, 'GET', '/v1/rooms');
        if (res.status === 401) refusedAt[n.id] = Date.now() - t0;
        else expect(res.status).toBe(200);
      }
    }
    expect(Object.keys(refusedAt)).toHaveLength(2);
    const slowest = Math.max(...Object.values(refusedAt));
    expect(slowest).toBeLessThan(1000);
    expect((await open.closed).code).toBe(4001);
    for (const n of [a, b]) {
      const refused = await connect(n.wsUrl, key).catch((err: unknown) => err);
      expect((refused as UpgradeRefusedError).status, n.id).toBe(401);
    }

    const now = Math.floor(Date.now() / 1000);
    const expired = await sign({ sub: 'user:ann', iat: now - 120, exp: now - 60 }, JWT_SECRET);
    for (const n of [a, b]) {
      const res = await withToken(n, expired, 'GET', '/v1/me/rooms');
      expect(res.status, n.id).toBe(401);
      expect(((await res.json()) as { detail: string }).detail).toBe('invalid token: expired');
    }
    figures('api key revocation', { nodes: 2, refusedWithinMs: slowest });
  });

  it('SQL injection through key name, scopes and id changes nothing', async () => {
    const databaseUrl = await database();
    const node = await startTestNode({ name: 'keys-abuse', overrides: { databaseUrl } });
    const payloads = [
      "'; DROP TABLE api_keys; --",
      "x') ; UPDATE api_keys SET revoked_at = NULL; --",
      "' OR '1'='1",
      "publish:a'; DELETE FROM users; --",
      "x' UNION SELECT secret_hash FROM api_keys --",
    ];
    const good = await node.admin('POST', '/v1/keys', { name: 'kept', scopes: ['publish:kept'] });
    const { id: keptId } = (await good.json()) as { id: string };
    const answers: number[] = [];
    for (const p of payloads) {
      answers.push((await node.admin('POST', '/v1/keys', { name: p, scopes: ['admin'] })).status);
      answers.push((await node.admin('POST', '/v1/keys', { name: 'x', scopes: [p] })).status);
      answers.push((await node.admin('DELETE', `/v1/keys/${encodeURIComponent(p)}`)).status);
      const asKey = await fetch(`${node.url}/v1/keys`, {
        headers: { authorization: `Bearer thr_${'a'.repeat(26)}_${encodeURIComponent(p)}` },
      });
      answers.push(asKey.status);
    }
    expect(new Set(answers)).toEqual(new Set([400, 404, 401]));

    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT id, name, scopes, revoked_at FROM api_keys');
      expect(rows).toEqual([
        { id: keptId, name: 'kept', scopes: ['publish:kept'], revoked_at: null },
      ]);
    } finally {
      await client.end();
    }
    figures('api keys sql injection', { requests: answers.length, accepted: 0 });
  });
});
