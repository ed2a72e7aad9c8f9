import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openAuthDatabase } from '../../src/auth/database.ts';
import { migrate } from '../../src/auth/migrations.ts';
import { runDoctor } from '../../src/doctor.ts';
import { createLogger } from '../../src/log.ts';
import { freePort } from '../helpers/ports.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { readmeLines, shell, tempDir } from '../helpers/readme.ts';
import { startPrivateRedis } from '../helpers/redis.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';
import { startStandin } from '../twilio/standin.ts';

/** `threshold doctor <args>` in this process, with no THRESHOLD_* variables: code and lines. */
async function doctor(...args: string[]) {
  let text = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  const code = await runDoctor(['--timeout-ms', '3000', ...args], { out, env: {} });
  const lines = text.trimEnd().split('\n');
  /** The line of one check: `<outcome>  <check>  <detail>`. */
  const check = (name: string) => lines.find((l) => l.slice(6).startsWith(`${name}  `)) ?? '';
  return { code, text, lines, check };
}

/** A loopback server whose /healthz answers `status`: the public URL's far end. */
async function healthz(status: number): Promise<string> {
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/healthz' ? status : 404, { 'content-type': 'application/json' });
    res.end('{"status":"ok"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  onTestFinished(() => new Promise<void>((r) => server.close(() => r())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function standin() {
  const twilio = await startStandin();
  onTestFinished(() => twilio.close());
  return twilio;
}

describe('threshold doctor', () => {
  it('says ok to every check of a sound deployment, and exits 0', async () => {
    const redis = await startPrivateRedis();
    const database = await createTestDatabase();
    onTestFinished(() => database.drop());
    const db = await openAuthDatabase({ url: database.url, dataDir: '' }, createLogger('silent'));
    await migrate(db, createLogger('silent'));
    await db.close();
    const twilio = await standin();

    const { code, lines, check, text } = await doctor(
      '--redis-url',
      redis.url,
      '--database-url',
      database.url,
      '--twilio-account-sid',
      twilio.accountSid,
      '--twilio-auth-token',
      twilio.authToken,
      '--twilio-api-url',
      twilio.url,
      '--public-url',
      await healthz(200),
    );
    expect(code, text).toBe(0);
    expect(
      lines.slice(0, -1).every((l) => l.startsWith('ok    ')),
      text,
    ).toBe(true);
    expect(check('redis')).toContain(`${redis.url} answers`);
    expect(check('redis cluster')).toContain('standalone');
    expect(check('redis version')).toMatch(/Redis \d+\.\d+\.\d+/);
    expect(check('redis persistence')).toContain('append-only file on');
    expect(check('auth database')).toMatch(/migrated: (\d+) of \1 migrations/);
    expect(check('twilio')).toContain(`account ${twilio.accountSid} (Stand-in account) is active`);
    expect(check('public url')).toMatch(/\/healthz answers 200/);
    expect(lines.at(-1)).toBe('7 checks: 7 ok, 0 warn, 0 FAIL');
  });

  it('fails when Redis does not answer, naming its URL, and exits 1', async () => {
    const url = `redis://127.0.0.1:${await freePort()}`;
    const { code, check, text } = await doctor(
      '--redis-url',
      url,
      '--data-dir',
      await tempDir('doctor'),
    );
    expect(code, text).toBe(1);
    expect(check('redis')).toMatch(
      new RegExp(`^FAIL  redis +cannot reach ${url}: connect ECONNREFUSED .*fix redisUrl`),
    );
    // The other checks still run.
    expect(check('twilio')).toMatch(/^ok /);
  });

  it('warns when nothing persists, and a warning fails nothing', async () => {
    const redis = await startPrivateRedis({ appendOnly: false });
    const { code, check, text } = await doctor(
      '--redis-url',
      redis.url,
      '--data-dir',
      await tempDir('doctor'),
    );
    expect(code, text).toBe(0);
    expect(check('redis persistence')).toMatch(
      /^warn {2}redis persistence +nothing persists \(appendonly no, save ""\).*set appendonly yes/,
    );
  });

  it('fails on credentials Twilio refuses, and on a Twilio it cannot reach', async () => {
    const redis = await startPrivateRedis();
    const twilio = await standin();
    const common = ['--redis-url', redis.url, '--data-dir', await tempDir('doctor')];
    const wrong = await doctor(
      ...common,
      '--twilio-account-sid',
      twilio.accountSid,
      '--twilio-auth-token',
      'not-the-token',
      '--twilio-api-url',
      twilio.url,
    );
    expect(wrong.code, wrong.text).toBe(1);
    expect(wrong.check('twilio')).toMatch(
      new RegExp(
        `^FAIL  twilio +${twilio.url} refuses account ${twilio.accountSid} \\(401 20003.*invalid credentials`,
      ),
    );
    // Twilio configured without a public URL: its status callbacks cannot be asked for.
    expect(wrong.check('public url')).toMatch(/^warn {2}public url +not set/);

    const away = `http://127.0.0.1:${await freePort()}`;
    const unreachable = await doctor(
      ...common,
      '--twilio-account-sid',
      twilio.accountSid,
      '--twilio-auth-token',
      twilio.authToken,
      '--twilio-api-url',
      away,
    );
    expect(unreachable.code).toBe(1);
    expect(unreachable.check('twilio')).toMatch(new RegExp(`^FAIL  twilio +cannot reach ${away}`));
  });

  it('fails a public URL whose /healthz answers something else than a node', async () => {
    const redis = await startPrivateRedis();
    const url = await healthz(502);
    const { code, check } = await doctor(
      '--redis-url',
      redis.url,
      '--data-dir',
      await tempDir('doctor'),
      '--public-url',
      url,
    );
    expect(code).toBe(1);
    expect(check('public url')).toMatch(
      new RegExp(`^FAIL  public url +${url}/healthz answered 502`),
    );
  });

  it('checks every master of a Redis Cluster, and fails a cluster with slots uncovered', async () => {
    const cluster = await startRedisCluster(3);
    const args = ['--redis-url', cluster.urls[0] as string, '--data-dir', await tempDir('doctor')];
    const sound = await doctor(...args);
    expect(sound.code, sound.text).toBe(0);
    expect(sound.check('redis cluster')).toMatch(
      /^ok {4}redis cluster +Redis Cluster of 3 masters, cluster_state ok, all 16384 slots covered$/,
    );
    expect(sound.check('redis persistence')).toMatch(/every master: append-only file on/);

    // A master gone with no replica to take over: first it does not answer, then, once the
    // others fail it, its slots are uncovered.
    await cluster.masters[2]?.stop();
    const down = await doctor(...args);
    expect(down.code, down.text).toBe(1);
    expect(down.check('redis cluster')).toMatch(
      /^FAIL {2}redis cluster +(masters that do not answer: .*ECONNREFUSED|.*cluster_state fail)/,
    );
    let broken = down;
    for (let i = 0; i < 50 && !broken.check('redis cluster').includes('cluster_state fail'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      broken = await doctor(...args);
    }
    expect(broken.check('redis cluster')).toMatch(
      /^FAIL {2}redis cluster +Redis Cluster of 2 masters \(and 1 failed\): cluster_state fail, 16384 of 16384 slots assigned, \d+ ok/,
    );
  }, 60_000);

  it('the README example runs as written (its Redis replaced by one of the test), with exit 0', async () => {
    const lines = readmeLines('## Doctor');
    const command = lines.find((l) => l.startsWith('npx threshold doctor'));
    expect(command).toBeDefined();
    const shown = lines.filter((l) => /^# (ok|warn|FAIL) /.test(l)).map((l) => l.slice(2));
    const redis = await startPrivateRedis({ appendOnly: false });
    const dir = await tempDir('doctor-readme');
    const out = await shell(
      `THRESHOLD_DATA_DIR=${dir} ${(command as string).replace('redis://127.0.0.1:6379', redis.url)}`,
      60_000,
    );
    // Same checks, same outcomes, in the same order; the details name this machine's paths.
    const columns = (l: string) => l.slice(0, 25).trimEnd();
    const printed = out.trimEnd().split('\n');
    expect(printed.slice(0, -1).map(columns)).toEqual(shown.map(columns));
    expect(printed.at(-1)).toBe(lines.find((l) => /^# \d+ checks:/.test(l))?.slice(2));
  });
});
