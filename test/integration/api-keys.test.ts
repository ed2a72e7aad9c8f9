import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from '../helpers/ports.ts';
import { describe, expect, it, onTestFinished } from 'vitest';
import { as, startTestNode, type TestNode } from '../helpers/node.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { BIN, runThreshold } from '../helpers/process.ts';
import { redisUrl, uniquePrefix } from '../helpers/redis.ts';
import { tempDir } from '../helpers/readme.ts';
import type { UpgradeRefusedError } from '../helpers/ws-client.ts';
import { connect } from '../helpers/ws-client.ts';

const run = promisify(execFile);

async function createKey(node: TestNode, name: string, scopes: string[]) {
  const res = await node.admin('POST', '/v1/keys', { name, scopes });
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as { id: string; key: string; name: string; scopes: string[] };
}

describe.each([
  { db: 'embedded PGlite', postgres: false },
  { db: 'the machine’s Postgres', postgres: true },
])('API keys on $db', ({ postgres }) => {
  async function database() {
    const dataDir = await tempDir('api-keys');
    if (!postgres) return { dataDir };
    const db = await createTestDatabase();
    onTestFinished(() => db.drop());
    return { dataDir, databaseUrl: db.url };
  }

  it('an admin key creates rooms; listed without its secret; revoked, it gets 401 and its WebSocket is closed', async () => {
    const node = await startTestNode({ name: 'keys', overrides: await database() });
    const created = await createKey(node, 'ops', ['admin']);
    expect(created.key).toMatch(/^thr_[0-9a-z]{26}_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({ name: 'ops', scopes: ['admin'] });
    const ops = as(node, created.key);

    expect((await ops('POST', '/v1/rooms', { id: 'by-key' })).status).toBe(201);
    expect((await ops('PUT', '/v1/rooms/by-key/members/user:ann')).status).toBe(201);
    // An admin key may make more keys, as the admin token may.
    expect((await ops('POST', '/v1/keys', { name: 'more', scopes: ['admin'] })).status).toBe(201);

    const listed = await (await ops('GET', '/v1/keys')).text();
    expect(listed).toContain(created.id);
    expect(listed).not.toContain(created.key.slice(31));
    expect(JSON.parse(listed).keys[0]).not.toHaveProperty('key');

    const socket = await connect(node.wsUrl, created.key);
    await socket.welcome;
    expect((await node.admin('DELETE', `/v1/keys/${created.id}`)).status).toBe(204);
    expect((await socket.closed).code).toBe(4001);
    const refused = await ops('POST', '/v1/rooms', { id: 'after-revoke' });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ detail: 'invalid API key: unknown or revoked' });
    const upgrade = await connect(node.wsUrl, created.key).catch((err: unknown) => err);
    expect((upgrade as UpgradeRefusedError).status).toBe(401);

    const after = (await (await node.admin('GET', '/v1/keys')).json()) as {
      keys: { id: string; revokedAt: string | null }[];
    };
    expect(after.keys.find((k) => k.id === created.id)?.revokedAt).toEqual(expect.any(String));
    expect((await node.admin('DELETE', `/v1/keys/${'0'.repeat(26)}`)).status).toBe(404);
  });

  it('a publish key publishes to its rooms only, as its own service name, and nothing else', async () => {
    const node = await startTestNode({ name: 'keys', overrides: await database() });
    await node.createRoom('alerts', ['user:ann']);
    await node.createRoom('private', ['user:ann']);
    const { key } = await createKey(node, 'billing', ['publish:alerts']);
    const billing = as(node, key);

    const sent = await billing('POST', '/v1/rooms/alerts/messages?wait=1', { body: 'invoice due' });
    expect(sent.status, await sent.clone().text()).toBe(201);
    const history = (await (await node.admin('GET', '/v1/rooms/alerts/messages')).json()) as {
      messages: unknown[];
    };
    expect(history.messages[0]).toMatchObject({
      body: 'invoice due',
      sender: { kind: 'service', id: 'billing' },
    });

    const elsewhere = await billing('POST', '/v1/rooms/private/messages', { body: 'x' });
    expect(elsewhere.status).toBe(403);
    expect(((await elsewhere.json()) as { detail: string }).detail).toContain('publish:alerts');
    const spoofed = await billing('POST', '/v1/rooms/alerts/messages', {
      body: 'x',
      sender: 'user:ann',
    });
    expect(spoofed.status).toBe(403);
    for (const [method, path] of [
      ['POST', '/v1/rooms'],
      ['GET', '/v1/rooms/alerts/messages'],
      ['GET', '/v1/keys'],
      ['GET', '/v1/me/rooms'],
    ] as const)
      expect((await billing(method, path, method === 'GET' ? undefined : {})).status).toBe(403);
    const socket = await connect(node.wsUrl, key).catch((err: unknown) => err);
    expect((socket as UpgradeRefusedError).status).toBe(403);
  });

  it('refuses bad key requests with a clear 400 and members with 403', async () => {
    const node = await startTestNode({ name: 'keys', overrides: await database() });
    const bad = async (body: unknown) => {
      const res = await node.admin('POST', '/v1/keys', body);
      expect(res.status).toBe(400);
      return ((await res.json()) as { detail: string }).detail;
    };
    expect(await bad({ name: 'x', scopes: [] })).toMatch(/^scopes:/);
    expect(await bad({ name: 'x', scopes: ['root'] })).toContain(
      'expected "admin", "tags", "notify" or "publish:<room id>"',
    );
    expect(await bad({ name: 'x', scopes: ['publish:Not A Room'] })).toMatch(/^scopes\.0:/);
    expect(await bad({ name: 'x', scopes: ['admin', 'publish:a'] })).toContain('alone');
    expect(await bad({ name: 'has space', scopes: ['admin'] })).toMatch(/^name:/);
    const member = as(node, await node.token('user:ann'));
    expect((await member('POST', '/v1/keys', { name: 'x', scopes: ['admin'] })).status).toBe(403);
    expect((await as(node, 'thr_nonsense')('GET', '/v1/keys')).status).toBe(401);
  });
});

describe('npx threshold keys', () => {
  it(
    'create --scope admin prints a key the node then takes; list shows it without the secret',
    { timeout: 60_000 },
    async () => {
      const dataDir = await tempDir('keys-cli');
      const env = { PATH: process.env.PATH, HOME: process.env.HOME, THRESHOLD_DATA_DIR: dataDir };
      const created = await run(
        process.execPath,
        [BIN, 'keys', 'create', '--scope', 'admin', '--name', 'bootstrap'],
        { env },
      );
      const key = created.stdout.trim();
      expect(key).toMatch(/^thr_[0-9a-z]{26}_[A-Za-z0-9_-]{43}$/);
      expect(created.stderr).toContain('shown once');
      const listed = await run(process.execPath, [BIN, 'keys', 'list'], { env });
      expect(listed.stdout).toMatch(/^[0-9a-z]{26} {2}bootstrap {2}admin {2}created /);
      expect(listed.stdout).not.toContain(key.slice(31));

      // A node process on that data directory takes the key (and so opens the database).
      const port = await freePort();
      const node = runThreshold(['node'], {
        ...env,
        THRESHOLD_PORT: String(port),
        THRESHOLD_REDIS_URL: redisUrl(),
        THRESHOLD_KEY_PREFIX: uniquePrefix('keys-cli'),
        THRESHOLD_PARTITIONS: '8',
      });
      await node.waitFor(/relay node started/);
      const res = await fetch(`http://127.0.0.1:${port}/v1/rooms`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'bootstrapped' }),
      });
      expect(res.status, await res.clone().text()).toBe(201);
      // The node now holds the embedded database: the command says how to go on.
      const busy = await run(process.execPath, [BIN, 'keys', 'list'], { env }).catch(
        (err: { code: number; stderr: string }) => err,
      );
      expect(busy).toMatchObject({ code: 1 });
      expect((busy as { stderr: string }).stderr).toContain('POST /v1/keys');
    },
  );

  it('refuses a create without a scope, and a bad one', { timeout: 60_000 }, async () => {
    const env = { PATH: process.env.PATH, THRESHOLD_DATA_DIR: await tempDir('keys-cli') };
    for (const args of [[], ['--scope', 'root']]) {
      const failed = await run(process.execPath, [BIN, 'keys', 'create', ...args], { env }).catch(
        (err: { code: number; stderr: string }) => err,
      );
      expect(failed).toMatchObject({ code: 1 });
      expect((failed as { stderr: string }).stderr).toMatch(/--scope/);
    }
  });
});
