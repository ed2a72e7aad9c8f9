import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { type Config, isLoopback, loadConfig, settings } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';

const defaultsFile = JSON.parse(
  readFileSync(new URL('../../config/default.json', import.meta.url), 'utf8'),
) as Config;

/** loadConfig with nothing from the real process environment. */
const load = (env: Record<string, string> = {}, argv: string[] = []) => loadConfig({ env, argv });

/** The ConfigError that `fn` throws (fails the test when it throws nothing or something else). */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

describe('loadConfig', () => {
  it('returns config/default.json as is with no environment and no flags', () => {
    const config = load();
    expect(config).toEqual(defaultsFile);
    expect(config.port).toBe(8080);
    expect(config.host).toBe('127.0.0.1');
    expect(config.partitions).toBe(64);
    expect(config.keyPrefix).toBe('thr:');
    expect(config.mesh.leaseTtlMs).toBe(3000);
  });

  it('ignores environment variables that are not THRESHOLD_ settings', () => {
    expect(load({ PORT: '1234', THRESHOLD_NOT_A_SETTING: 'x' })).toEqual(defaultsFile);
  });

  it('treats an empty variable (THRESHOLD_PORT= from an unset compose variable) as not set, not as 0', () => {
    const config = load({ THRESHOLD_PORT: '', THRESHOLD_MESH_MAX_FUNNEL_LENGTH: '' });
    expect(config.port).toBe(defaultsFile.port);
    expect(config.mesh.maxFunnelLength).toBe(defaultsFile.mesh.maxFunnelLength);
  });

  it('lets THRESHOLD_PORT override the default port, as a number', () => {
    expect(load({ THRESHOLD_PORT: '9001' }).port).toBe(9001);
  });

  it('lets THRESHOLD_MESH_LEASE_TTL_MS override mesh.leaseTtlMs and leaves the other mesh settings alone', () => {
    const config = load({ THRESHOLD_MESH_LEASE_TTL_MS: '1500' });
    expect(config.mesh).toEqual({ ...defaultsFile.mesh, leaseTtlMs: 1500 });
  });

  it('reads the documented environment names of DESIGN §5', () => {
    const config = load({
      THRESHOLD_REDIS_URL: 'redis://10.0.0.5:6380',
      THRESHOLD_HOST: '0.0.0.0',
      THRESHOLD_NODE_ID: 'relay-1',
      THRESHOLD_PARTITIONS: '128',
      THRESHOLD_ADMIN_TOKEN: 'admin-secret',
      THRESHOLD_JWT_SECRET: 'jwt-secret',
      THRESHOLD_PUBLIC_URL: 'https://relay.example.com',
    });
    expect(config).toMatchObject({
      redisUrl: 'redis://10.0.0.5:6380',
      host: '0.0.0.0',
      nodeId: 'relay-1',
      partitions: 128,
      adminToken: 'admin-secret',
      jwtSecret: 'jwt-secret',
      publicUrl: 'https://relay.example.com',
    });
  });

  it("reads Twilio's own variable names for the credentials, and THRESHOLD_TWILIO_API_URL", () => {
    const config = load({
      TWILIO_ACCOUNT_SID: 'AC0123456789abcdef0123456789abcdef',
      TWILIO_AUTH_TOKEN: 'token',
      THRESHOLD_TWILIO_API_URL: 'http://127.0.0.1:4010',
      THRESHOLD_SMS_RATE_PER_SECOND: '0.5',
    });
    expect(config.twilio).toEqual({
      accountSid: 'AC0123456789abcdef0123456789abcdef',
      authToken: 'token',
      apiUrl: 'http://127.0.0.1:4010',
    });
    expect(config.sms.ratePerSecond).toBe(0.5);
    const err = configError(() => load({ TWILIO_ACCOUNT_SID: 'SK123' }));
    expect(err.message).toContain('TWILIO_ACCOUNT_SID');
  });

  it('lets --port override THRESHOLD_PORT', () => {
    expect(load({ THRESHOLD_PORT: '9001' }, ['--port', '9000']).port).toBe(9000);
    expect(load({ THRESHOLD_PORT: '9001' }, ['--port=9002']).port).toBe(9002);
  });

  it('lets --mesh-lease-ttl-ms override THRESHOLD_MESH_LEASE_TTL_MS', () => {
    const config = load({ THRESHOLD_MESH_LEASE_TTL_MS: '1500' }, ['--mesh-lease-ttl-ms', '500']);
    expect(config.mesh.leaseTtlMs).toBe(500);
  });

  it('lets overrides win over flags and environment', () => {
    const config = loadConfig({
      env: { THRESHOLD_PORT: '9001' },
      argv: ['--port', '9000'],
      overrides: { port: 0, mesh: { heartbeatMs: 100 } },
    });
    expect(config.port).toBe(0);
    expect(config.mesh).toEqual({ ...defaultsFile.mesh, heartbeatMs: 100 });
  });

  it('rejects THRESHOLD_PORT=abc with a ConfigError naming port and THRESHOLD_PORT', () => {
    const err = configError(() => load({ THRESHOLD_PORT: 'abc' }));
    expect(err.setting).toBe('port');
    expect(err.message).toContain('port');
    expect(err.message).toContain('THRESHOLD_PORT');
    expect(err.message).toContain('--port');
    expect(err.name).toBe('ConfigError');
    expect(err.code).toBe('invalid_config');
  });

  it('rejects a port above 65535 given as a flag, naming the flag', () => {
    const err = configError(() => load({}, ['--port', '70000']));
    expect(err.message).toContain('THRESHOLD_PORT');
    expect(err.message).toContain('--port');
  });

  it('rejects a lease ttl below its minimum, naming the nested setting and its env var', () => {
    const err = configError(() => load({ THRESHOLD_MESH_LEASE_TTL_MS: '10' }));
    expect(err.setting).toBe('mesh.leaseTtlMs');
    expect(err.message).toContain('mesh.leaseTtlMs');
    expect(err.message).toContain('THRESHOLD_MESH_LEASE_TTL_MS');
    expect(err.message).toContain('--mesh-lease-ttl-ms');
  });

  it('rejects an unknown flag with a ConfigError', () => {
    const err = configError(() => load({}, ['--no-such-setting', '1']));
    expect(err.message).toContain('no-such-setting');
  });

  it('rejects a positional argument with a ConfigError', () => {
    configError(() => load({}, ['stray']));
  });

  it('rejects THRESHOLD_REDIS_URL=http://x, naming redisUrl', () => {
    const err = configError(() => load({ THRESHOLD_REDIS_URL: 'http://x' }));
    expect(err.setting).toBe('redisUrl');
    expect(err.message).toContain('THRESHOLD_REDIS_URL');
  });

  it.each(['redis://localhost:6379', 'rediss://user:pass@cache.example.com:6380/2', ''])(
    'accepts redis URL %j',
    (url) => {
      expect(load({ THRESHOLD_REDIS_URL: url }).redisUrl).toBe(url);
    },
  );

  it.each(['*', 'https://app.example.com, HTTP://localhost:5173/', ''])(
    'accepts http.allowedOrigins %j',
    (origins) => {
      expect(load({ THRESHOLD_HTTP_ALLOWED_ORIGINS: origins }).http.allowedOrigins).toBe(origins);
    },
  );

  it.each(['https://app.example.com/path', 'app.example.com'])(
    'rejects http.allowedOrigins %j, naming the setting',
    (origins) => {
      const err = configError(() => load({}, ['--http-allowed-origins', origins]));
      expect(err.setting).toBe('http.allowedOrigins');
    },
  );

  it('takes no * in ws.allowedOrigins (a WebSocket is let in from any origin when it is empty)', () => {
    expect(configError(() => load({ THRESHOLD_WS_ALLOWED_ORIGINS: '*' })).setting).toBe(
      'ws.allowedOrigins',
    );
  });

  it('rejects a partition count of 0', () => {
    expect(configError(() => load({ THRESHOLD_PARTITIONS: '0' })).setting).toBe('partitions');
  });

  it('rejects an unknown log level', () => {
    expect(configError(() => load({ THRESHOLD_LOG_LEVEL: 'loud' })).setting).toBe('logLevel');
  });
});

describe('loadConfig with a config file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'threshold-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  let files = 0;
  /** Writes `content` (an object as JSON, or raw text) to a new file under `sub`; returns its path. */
  function configFile(content: unknown, sub = ''): string {
    mkdirSync(join(dir, sub), { recursive: true });
    const path = join(dir, sub, `config-${++files}.json`);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  }

  it('merges the file named by --config over the defaults, under environment and flags', () => {
    const file = configFile({
      port: 9100,
      partitions: 16,
      mesh: { leaseTtlMs: 2000 },
      webhooks: { timeoutMs: 3000 },
    });
    const config = load({ THRESHOLD_PORT: '9200' }, ['--config', file, '--partitions', '32']);
    expect(config.port).toBe(9200);
    expect(config.partitions).toBe(32);
    expect(config.mesh).toEqual({ ...defaultsFile.mesh, leaseTtlMs: 2000 });
    expect(config.webhooks.timeoutMs).toBe(3000);
    expect(config.host).toBe(defaultsFile.host);
  });

  it('reads the file named by THRESHOLD_CONFIG; --config wins over it', () => {
    const fromEnv = configFile({ port: 9101 });
    const fromFlag = configFile({ port: 9102 });
    expect(load({ THRESHOLD_CONFIG: fromEnv }).port).toBe(9101);
    expect(load({ THRESHOLD_CONFIG: fromEnv }, [`--config=${fromFlag}`]).port).toBe(9102);
  });

  it('reads channels, resolving file paths against the config file directory, not the working directory', () => {
    const file = configFile(
      {
        channels: [
          { name: 'pager', module: './plugins/pager.js', options: { url: 'https://p.example' } },
          { name: 'fax', module: '../shared/fax.mjs' },
          { name: 'abs', module: '/opt/threshold/abs.js' },
          { name: 'hooks', module: 'webhook' },
          { name: 'push', module: '@acme/threshold-push' },
        ],
      },
      'etc',
    );
    const { channels } = load({}, ['--config', file]);
    expect(channels).toEqual([
      {
        name: 'pager',
        module: pathToFileURL(join(dir, 'etc', 'plugins', 'pager.js')).href,
        options: { url: 'https://p.example' },
      },
      { name: 'fax', module: pathToFileURL(join(dir, 'shared', 'fax.mjs')).href, options: {} },
      { name: 'abs', module: pathToFileURL('/opt/threshold/abs.js').href, options: {} },
      { name: 'hooks', module: 'webhook', options: {} },
      { name: 'push', module: '@acme/threshold-push', options: {} },
    ]);
  });

  it('has no channels, and no variable or flag for them, by default', () => {
    expect(load().channels).toEqual([]);
    expect(settings().some((leaf) => leaf.path[0] === 'channels')).toBe(false);
  });

  it('rejects a missing config file with a ConfigError naming it', () => {
    const missing = join(dir, 'no-such.json');
    const err = configError(() => load({}, ['--config', missing]));
    expect(err.message).toContain(missing);
    expect(err.message).toContain('no such file');
    expect(configError(() => load({ THRESHOLD_CONFIG: missing })).message).toContain(missing);
  });

  it('rejects a config file that is not JSON, or not an object, naming it', () => {
    const broken = configFile('{"port": 9000,');
    const err = configError(() => load({}, ['--config', broken]));
    expect(err.message).toContain(broken);
    expect(err.message).toContain('not valid JSON');
    const list = configFile([1, 2]);
    expect(configError(() => load({}, ['--config', list])).message).toContain(list);
  });

  it('rejects an unknown key in the config file (a typo), naming it and the file', () => {
    const file = configFile({ mesh: { leaseTtl: 2000 } });
    const err = configError(() => load({}, ['--config', file]));
    expect(err.setting).toBe('mesh.leaseTtl');
    expect(err.message).toContain(file);
  });

  it('rejects a bad value from the config file, naming the setting', () => {
    const file = configFile({ mesh: { leaseTtlMs: 1 } });
    expect(configError(() => load({}, ['--config', file])).setting).toBe('mesh.leaseTtlMs');
  });

  it('refuses two channels with the same name', () => {
    const file = configFile({
      channels: [
        { name: 'hooks', module: 'webhook' },
        { name: 'hooks', module: './other.js' },
      ],
    });
    const err = configError(() => load({}, ['--config', file]));
    expect(err.setting).toBe('channels.1.name');
    expect(err.message).toContain('duplicate channel name "hooks"');
    expect(err.message).toContain(file);
  });

  it.each([
    [{ name: 'Pager', module: 'webhook' }, 'channels.0.name'],
    [{ name: '1pager', module: 'webhook' }, 'channels.0.name'],
    [{ name: 'pager', module: '' }, 'channels.0.module'],
    [{ name: 'pager', module: 'C:\\plugins\\pager.js' }, 'channels.0.module'],
    [{ name: 'pager' }, 'channels.0.module'],
    [{ name: 'pager', module: 'webhook', option: {} }, 'channels.0'],
  ])('rejects channel %j, naming %s', (channel, setting) => {
    const file = configFile({ channels: [channel] });
    expect(configError(() => load({}, ['--config', file])).setting).toBe(setting);
  });
});

describe('settings', () => {
  it('derives an environment name and a flag for every leaf setting', () => {
    const leaves = settings();
    expect(leaves).toContainEqual({
      path: ['mesh', 'leaseTtlMs'],
      env: 'THRESHOLD_MESH_LEASE_TTL_MS',
      flag: 'mesh-lease-ttl-ms',
    });
    expect(leaves).toContainEqual({
      path: ['redisUrl'],
      env: 'THRESHOLD_REDIS_URL',
      flag: 'redis-url',
    });
    expect(new Set(leaves.map((l) => l.env)).size).toBe(leaves.length);
    expect(new Set(leaves.map((l) => l.flag)).size).toBe(leaves.length);
  });
});

describe('isLoopback', () => {
  it.each(['127.0.0.1', '127.10.20.30', 'localhost', '::1'])('treats %s as loopback', (host) => {
    expect(isLoopback(host)).toBe(true);
  });

  it.each([
    '0.0.0.0',
    '::',
    '192.168.1.10',
    '10.0.0.1',
    'example.com',
    '127.0.0.1.nip.io',
    'localhost.example.com',
    '',
  ])('does not treat %j as loopback', (host) => {
    expect(isLoopback(host)).toBe(false);
  });
});
