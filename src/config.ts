import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/**
 * Settings come from `config/default.json` (and `config/local.json` when present), then
 * `THRESHOLD_*` environment variables, then command-line flags. Every leaf setting has a
 * derived environment name and flag: `mesh.leaseTtlMs` is `THRESHOLD_MESH_LEASE_TTL_MS`
 * and `--mesh-lease-ttl-ms`.
 */
const ms = (min: number) => z.coerce.number().int().min(min).max(86_400_000);

const ConfigSchema = z.object({
  redisUrl: z.string().refine((v) => v === '' || /^rediss?:\/\//.test(v), {
    message: 'expected a redis:// or rediss:// URL (or empty to start a local redis-server)',
  }),
  host: z.string().min(1),
  port: z.coerce.number().int().min(0).max(65535),
  nodeId: z
    .string()
    .regex(/^$|^[A-Za-z0-9._-]{1,64}$/, 'expected 1-64 characters of A-Z a-z 0-9 . _ -'),
  partitions: z.coerce.number().int().min(1).max(16384),
  keyPrefix: z.string().min(1).max(64),
  adminToken: z.string(),
  jwtSecret: z.string(),
  publicUrl: z.string().refine((v) => v === '' || URL.canParse(v), { message: 'expected a URL' }),
  advertiseUrl: z
    .string()
    .refine((v) => v === '' || URL.canParse(v), { message: 'expected a URL' }),
  dataDir: z.string().min(1),
  /** fsync policy of the local redis-server's append-only file (ignored with a Redis URL). */
  appendFsync: z.enum(['always', 'everysec']),
  /** How long a Redis command may take before it fails (ingress then answers 503). */
  redisCommandTimeoutMs: ms(100),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  mesh: z.object({
    heartbeatMs: ms(50),
    nodeTtlMs: ms(200),
    leaseTtlMs: ms(200),
    readBatch: z.coerce.number().int().min(1).max(10_000),
    readBlockMs: ms(10),
    maxAttempts: z.coerce.number().int().min(1).max(1000),
    trimIntervalMs: ms(100),
    maxFunnelLength: z.coerce.number().int().min(0),
  }),
  rooms: z.object({
    historyLength: z.coerce.number().int().min(1).max(100_000_000),
    dedupeTtlHours: z.coerce
      .number()
      .min(24)
      .max(24 * 365),
  }),
  http: z.object({
    maxBodyBytes: z.coerce
      .number()
      .int()
      .min(256)
      .max(64 * 1024 * 1024),
    waitTimeoutMs: ms(100),
    maxBodyChars: z.coerce.number().int().min(1).max(1_000_000),
  }),
  ws: z.object({
    maxFrameBytes: z.coerce
      .number()
      .int()
      .min(256)
      .max(64 * 1024 * 1024),
    maxBufferedBytes: z.coerce.number().int().min(1024),
    heartbeatMs: ms(100),
    replayPageSize: z.coerce.number().int().min(1).max(10_000),
    /**
     * Comma-separated origins (`https://app.example.com`) browsers may connect from; empty: any.
     * Compared in lowercase without a trailing slash, the way browsers send them.
     */
    allowedOrigins: z
      .string()
      .refine((v) => list(v).every((o) => /^[a-z][a-z0-9+.-]*:\/\/[^/\s]+\/?$/i.test(o)), {
        message: 'expected comma-separated origins such as https://app.example.com (no path)',
      }),
    /** Frames a connection may send per second (0: no limit); more are dropped. */
    framesPerSecond: z.coerce.number().min(0).max(1_000_000),
    frameBurst: z.coerce.number().int().min(1).max(1_000_000),
    /** Frames dropped (forgiven at framesPerSecond) before the connection is closed (1008). */
    maxDroppedFrames: z.coerce.number().int().min(1).max(1_000_000),
    /** Open connections per peer address / per member on one node (0: no limit). */
    maxConnectionsPerIp: z.coerce.number().int().min(0),
    maxConnectionsPerMember: z.coerce.number().int().min(0),
  }),
  /** Per-client publish rate over every node (HTTP and WebSocket; the admin token is exempt). */
  rateLimit: z.object({
    publishPerSecond: z.coerce.number().min(0).max(1_000_000),
    publishBurst: z.coerce.number().int().min(1).max(1_000_000),
  }),
  /** Without both credentials, SMS runs in development mode: texts are logged, not sent. */
  twilio: z.object({
    accountSid: z
      .string()
      .regex(/^$|^AC[0-9a-fA-F]{32}$/, 'expected an account SID (AC + 32 hex digits)'),
    authToken: z.string(),
    /** Twilio REST base: a local stand-in in tests and development. */
    apiUrl: z.url({ protocol: /^https?$/ }),
  }),
  sms: z.object({
    /** Texts per second per sending number (a US long code takes about 1). */
    ratePerSecond: z.coerce.number().positive().max(1000),
    burst: z.coerce.number().int().min(1).max(10_000),
    /** Send attempts before a text is dead-lettered (5xx, network errors, timeouts; not 429s). */
    maxAttempts: z.coerce.number().int().min(1).max(100),
    /** How long a text may keep being retried (429s count no attempt, only this budget). */
    maxRetryHours: z.coerce
      .number()
      .positive()
      .max(24 * 30),
    backoffBaseMs: ms(1),
    backoffMaxMs: ms(1),
    /** Outbox jobs read per round. */
    readBatch: z.coerce.number().int().min(1).max(10_000),
    sendTimeoutMs: ms(100),
    /** Twilio requests in flight at once, over all numbers. */
    maxInFlight: z.coerce.number().int().min(1).max(1000),
    /** Jobs held in memory per sending number; more wait in the outbox's retry set. */
    maxQueuedPerNumber: z.coerce.number().int().min(1).max(100_000),
  }),
  shutdownTimeoutMs: ms(100),
});

export type Config = z.infer<typeof ConfigSchema>;

const CONFIG_DIR = new URL('../config/', import.meta.url);

/** Reads the JSON defaults shipped in `config/`, with `config/local.json` on top. */
export function fileDefaults(): Record<string, unknown> {
  const base = JSON.parse(readFileSync(new URL('default.json', CONFIG_DIR), 'utf8'));
  const local = new URL('local.json', CONFIG_DIR);
  return existsSync(local) ? merge(base, JSON.parse(readFileSync(local, 'utf8'))) : base;
}

interface Leaf {
  path: string[];
  env: string;
  flag: string;
}

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();

/** Settings known by another environment name: Twilio's own (DESIGN §5). */
const ENV_NAMES: Record<string, string> = {
  'twilio.accountSid': 'TWILIO_ACCOUNT_SID',
  'twilio.authToken': 'TWILIO_AUTH_TOKEN',
};
const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Every setting with its environment name and flag, derived from the defaults' shape. */
export function settings(defaults = fileDefaults()): Leaf[] {
  const out: Leaf[] = [];
  const walk = (obj: Record<string, unknown>, path: string[]) => {
    for (const [key, value] of Object.entries(obj)) {
      const p = [...path, key];
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        walk(value as Record<string, unknown>, p);
      } else {
        out.push({
          path: p,
          env: ENV_NAMES[p.join('.')] ?? `THRESHOLD_${p.map(snake).join('_')}`,
          flag: p.map(kebab).join('-'),
        });
      }
    }
  };
  walk(defaults, []);
  return out;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  argv?: string[];
  /** Settings that win over everything (tests, the cluster launcher). */
  overrides?: Record<string, unknown>;
}

/** Builds and validates the configuration; a bad value throws a ConfigError naming the setting. */
export function loadConfig({
  env = process.env,
  argv = [],
  overrides = {},
}: LoadOptions = {}): Config {
  const defaults = fileDefaults();
  const leaves = settings(defaults);
  const raw = structuredClone(defaults);

  for (const leaf of leaves) {
    const value = env[leaf.env];
    // An empty variable (`THRESHOLD_PORT=` from an unset compose variable) means "not set",
    // never 0; string settings that may be empty are empty by default anyway.
    if (value !== undefined && value !== '') setPath(raw, leaf.path, value);
  }

  const { values } = parseFlags(argv, leaves);
  for (const leaf of leaves) {
    const value = values[leaf.flag];
    if (typeof value === 'string' && value !== '') setPath(raw, leaf.path, value);
  }

  const parsed = ConfigSchema.safeParse(merge(raw, overrides));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = (issue?.path ?? []).map(String);
    const leaf = leaves.find((l) => l.path.join('.') === path.join('.'));
    const name = path.join('.') || 'config';
    const where = leaf ? ` (${leaf.env} or --${leaf.flag})` : '';
    throw new ConfigError(
      name,
      `invalid setting ${name}${where}: ${issue?.message ?? 'invalid value'}`,
    );
  }
  return parsed.data;
}

function parseFlags(argv: string[], leaves: Leaf[]) {
  try {
    return parseArgs({
      args: argv,
      options: Object.fromEntries(leaves.map((l) => [l.flag, { type: 'string' as const }])),
      allowPositionals: false,
      strict: true,
    });
  } catch (err) {
    throw new ConfigError(
      'flags',
      `${(err as Error).message}; run \`threshold settings\` for the list of settings`,
    );
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown) {
  let obj = target;
  for (const key of path.slice(0, -1)) obj = obj[key] as Record<string, unknown>;
  obj[path[path.length - 1] as string] = value;
}

function merge(
  base: Record<string, unknown>,
  top: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(top)) {
    const prev = out[key];
    out[key] =
      value &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      prev &&
      typeof prev === 'object'
        ? merge(prev as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

/** The items of a comma-separated setting (`ws.allowedOrigins`), trimmed, without empty ones. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** True when the node listens only on this machine, the one place open development mode may run. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
