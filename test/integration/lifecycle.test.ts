import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../helpers/ports.ts';
import { alive, runThreshold } from '../helpers/process.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
import { connect, redisUrl, uniquePrefix } from '../helpers/redis.ts';

const ADMIN = 'lifecycle-admin-token';

async function api(base: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `threshold-${name}-`));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function nodeEnv(port: number, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    THRESHOLD_PORT: String(port),
    THRESHOLD_ADMIN_TOKEN: ADMIN,
    THRESHOLD_JWT_SECRET: 'lifecycle-jwt-secret',
    THRESHOLD_PARTITIONS: '16',
    ...extra,
  };
}

describe('relay node process', () => {
  it('exits 0 on SIGTERM, and after a restart the history is intact', async () => {
    const port = await freePort();
    const env = nodeEnv(port, {
      THRESHOLD_REDIS_URL: redisUrl(),
      THRESHOLD_KEY_PREFIX: uniquePrefix('lifecycle restart'),
    });
    const base = `http://127.0.0.1:${port}`;

    const first = runThreshold(['node'], env);
    await first.waitFor(/relay node started/);
    expect((await api(base, 'POST', '/v1/rooms', { id: 'lobby' })).status).toBe(201);
    for (const body of ['one', 'two', 'three']) {
      expect((await api(base, 'POST', '/v1/rooms/lobby/messages?wait=1', { body })).status).toBe(
        201,
      );
    }
    const started = Date.now();
    first.child.kill('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(first.output()).toContain('"msg":"stopped"');

    const second = runThreshold(['node'], env);
    await second.waitFor(/relay node started/);
    const history = await api(base, 'GET', '/v1/rooms/lobby/messages?since=0');
    expect(
      history.json.messages.map((m: { seq: number; body: string }) => [m.seq, m.body]),
    ).toEqual([
      [1, 'one'],
      [2, 'two'],
      [3, 'three'],
    ]);
    expect(
      (await api(base, 'POST', '/v1/rooms/lobby/messages?wait=1', { body: 'four' })).json.seq,
    ).toBe(4);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('logs JSON lines by default, and lines for people with --log-format pretty', async () => {
    const start = async (args: string[], name: string) => {
      const env = nodeEnv(await freePort(), {
        THRESHOLD_REDIS_URL: redisUrl(),
        THRESHOLD_KEY_PREFIX: uniquePrefix(`lifecycle log ${name}`),
        THRESHOLD_NODE_ID: name,
      });
      const proc = runThreshold(['node', ...args], env);
      return { proc, line: await proc.waitFor(/^.*relay node started.*$/m) };
    };
    const [json, pretty] = await Promise.all([
      start([], 'log-json'),
      start(['--log-format', 'pretty'], 'log-pretty'),
    ]);
    expect(JSON.parse(json.line)).toMatchObject({ level: 30, node: 'log-json' });
    // `[12:04:31.250] INFO: log-pretty: relay node started`, its fields on lines of their own.
    expect(pretty.line).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: log-pretty: relay node started/);
    expect(pretty.line).not.toMatch(/[{}]/);
    expect(pretty.proc.output()).not.toContain('"msg":');
    for (const { proc } of [json, pretty]) {
      proc.child.kill('SIGTERM');
      expect((await proc.exited).code).toBe(0);
    }
  });

  it('started as the README says (npx threshold node), a SIGTERM to npx stops it gracefully with 0', async () => {
    const port = await freePort();
    const env = nodeEnv(port, {
      THRESHOLD_REDIS_URL: redisUrl(),
      THRESHOLD_KEY_PREFIX: uniquePrefix('lifecycle npx'),
    });
    const npx = spawn('npx', ['threshold', 'node'], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // A group of its own, so cleanup reaches a node that outlived npx.
      detached: true,
    });
    let out = '';
    npx.stdout.on('data', (d) => (out += d));
    npx.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) =>
      npx.once('exit', (code) => resolve(code)),
    );
    onTestFinished(() => {
      try {
        process.kill(-(npx.pid as number), 'SIGKILL');
      } catch {
        // Already gone.
      }
    });
    const deadline = Date.now() + 20_000;
    while (!out.includes('relay node started')) {
      expect(Date.now(), out).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 50));
    }
    npx.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('"msg":"stopped"');
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  }, 30_000);

  it('without a Redis URL runs on its own redis-server, keeps data across restarts and stops it on exit', async () => {
    const dataDir = await tempDir('embedded');
    const port = await freePort();
    const env = nodeEnv(port, { THRESHOLD_DATA_DIR: dataDir });
    const base = `http://127.0.0.1:${port}`;

    const first = runThreshold(['node'], { ...env, THRESHOLD_APPEND_FSYNC: 'always' });
    const line = await first.waitFor(/"redis":"redis:\/\/127\.0\.0\.1:\d+".*local redis-server/);
    await first.waitFor(/relay node started/);
    const local = connect(/"redis":"(redis:[^"]+)"/.exec(line)?.[1]);
    expect(await local.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
    expect(await local.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    await local.quit();
    const redisPid = Number(/"redisPid":(\d+)/.exec(first.output())?.[1]);
    expect(redisPid).toBeGreaterThan(0);
    expect(alive(redisPid)).toBe(true);
    await api(base, 'POST', '/v1/rooms', { id: 'kept' });
    expect(
      (await api(base, 'POST', '/v1/rooms/kept/messages?wait=1', { body: 'durable' })).json.seq,
    ).toBe(1);

    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    expect(alive(redisPid)).toBe(false);

    const second = runThreshold(['node'], env);
    await second.waitFor(/relay node started/);
    const history = await api(base, 'GET', '/v1/rooms/kept/messages');
    expect(history.json.messages.map((m: { body: string }) => m.body)).toEqual(['durable']);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('after a crash (SIGKILL) the restarted node stops the orphaned redis-server and keeps its data', async () => {
    const dataDir = await tempDir('orphan');
    const port = await freePort();
    const env = nodeEnv(port, { THRESHOLD_DATA_DIR: dataDir });
    const base = `http://127.0.0.1:${port}`;

    const first = runThreshold(['node'], env);
    await first.waitFor(/relay node started/);
    const orphan = Number(/"redisPid":(\d+)/.exec(first.output())?.[1]);
    await api(base, 'POST', '/v1/rooms', { id: 'survivor' });
    expect(
      (await api(base, 'POST', '/v1/rooms/survivor/messages?wait=1', { body: 'before the crash' }))
        .status,
    ).toBe(201);
    first.child.kill('SIGKILL');
    await first.exited;
    expect(alive(orphan)).toBe(true);

    const second = runThreshold(['node'], env);
    await second.waitFor(/relay node started/);
    expect(alive(orphan)).toBe(false);
    const history = await api(base, 'GET', '/v1/rooms/survivor/messages');
    expect(history.json.messages.map((m: { body: string }) => m.body)).toEqual([
      'before the crash',
    ]);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  it('says what to install when redis-server is missing', async () => {
    const dataDir = await tempDir('no-redis');
    const port = await freePort();
    // A PATH with node but without redis-server.
    const proc = runThreshold(['node'], {
      ...nodeEnv(port, { THRESHOLD_DATA_DIR: dataDir }),
      PATH: '/nonexistent',
    });
    const { code } = await proc.exited;
    expect(code).toBe(1);
    expect(proc.output()).toMatch(
      /Redis is not installed.*apt-get install redis-server.*THRESHOLD_REDIS_URL/s,
    );
  });

  it('refuses to start with a bad setting, naming it', async () => {
    const proc = runThreshold(['node'], { THRESHOLD_PORT: 'eighty' });
    expect((await proc.exited).code).toBe(1);
    expect(proc.output()).toMatch(/invalid setting port \(THRESHOLD_PORT or --port\)/);
  });

  it('refuses to start against a deployment with another partition count', async () => {
    const prefix = uniquePrefix('lifecycle partitions');
    const port = await freePort();
    const first = runThreshold(
      ['node'],
      nodeEnv(port, { THRESHOLD_REDIS_URL: redisUrl(), THRESHOLD_KEY_PREFIX: prefix }),
    );
    await first.waitFor(/relay node started/);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);

    const other = runThreshold(
      ['node'],
      nodeEnv(await freePort(), {
        THRESHOLD_REDIS_URL: redisUrl(),
        THRESHOLD_KEY_PREFIX: prefix,
        THRESHOLD_PARTITIONS: '32',
      }),
    );
    expect((await other.exited).code).toBe(1);
    expect(other.output()).toMatch(
      /holds a deployment with 16 partitions but the node was started with 32/,
    );
  });

  it('says which Redis it cannot reach', async () => {
    const nowhere = `redis://127.0.0.1:${await freePort()}`;
    const proc = runThreshold(['node'], { THRESHOLD_REDIS_URL: nowhere });
    expect((await proc.exited).code).toBe(1);
    expect(proc.output()).toContain(`cannot reach Redis at ${nowhere}`);
    expect(proc.output()).toContain('THRESHOLD_REDIS_URL');
  });

  it('refuses open development mode on a non-loopback address', async () => {
    const proc = runThreshold(['node'], {
      THRESHOLD_HOST: '0.0.0.0',
      THRESHOLD_REDIS_URL: redisUrl(),
    });
    expect((await proc.exited).code).toBe(1);
    expect(proc.output()).toMatch(/open development mode is only allowed on loopback/);
  });
});

describe('node ids', () => {
  it('a second node with the id of a live one refuses to start, saying why', async () => {
    const prefix = uniquePrefix('lifecycle twin');
    const env = (port: number) =>
      nodeEnv(port, {
        THRESHOLD_REDIS_URL: redisUrl(),
        THRESHOLD_KEY_PREFIX: prefix,
        THRESHOLD_NODE_ID: 'twin',
      });
    const first = runThreshold(['node'], env(await freePort()));
    await first.waitFor(/relay node started/);
    const second = runThreshold(['node'], env(await freePort()));
    expect((await second.exited).code).toBe(1);
    expect(second.output()).toMatch(/another live node already uses the id twin/);
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
  });

  it('a node restarted right after a crash takes its id (and partitions) back at once', async () => {
    const prefix = uniquePrefix('lifecycle crash restart');
    const port = await freePort();
    const env = nodeEnv(port, {
      THRESHOLD_REDIS_URL: redisUrl(),
      THRESHOLD_KEY_PREFIX: prefix,
      THRESHOLD_NODE_ID: 'phoenix',
    });
    const first = runThreshold(['node'], env);
    await first.waitFor(/relay node started/);
    first.child.kill('SIGKILL');
    await first.exited;
    const second = runThreshold(['node'], env);
    await second.waitFor(/relay node started/);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });
});
