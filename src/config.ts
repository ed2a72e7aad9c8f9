import { PEOPLE_SETTINGS } from './config-people.ts';
import { list, ms } from './config-values.ts';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import {
  isPlainObject,
  merge,
  pluginList,
  readConfigFile,
  unknownKeys,
  withResolvedModules,
} from './config-file.ts';
import { ConfigError } from './errors.ts';

export { FALLBACKS } from './config-people.ts';
export { list } from './config-values.ts';
export { BUILT_IN_CHANNELS, BUILT_INS, PLUGIN_NAME, readConfigFile } from './config-file.ts';
export type { ChannelSetting, PluginSetting } from './config-file.ts';

/**
 * Settings come from `config/default.json` (and `config/local.json` when present), then the
 * file named by `--config` or `THRESHOLD_CONFIG`, then `THRESHOLD_*` environment variables,
 * then command-line flags. Every leaf setting has a derived environment name and flag:
 * `mesh.leaseTtlMs` is `THRESHOLD_MESH_LEASE_TTL_MS` and `--mesh-lease-ttl-ms`. Lists
 * (`channels`) have neither: they are set in a file.
 */
/** A boolean setting: `true`/`false` (or `1`/`0`) in the environment and flags. */
const flag = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0'])])
  .transform((v) => v === true || v === 'true' || v === '1');
/** `scheme://host[:port]`, any case, an optional trailing slash: what `*.allowedOrigins` list. */
const ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[^/\s]+\/?$/i;

/** How a channel's deliveries are retried (`sms.*`, `outbox.*`: see RetryPolicy). */
const retrySettings = {
  /** Attempts before a delivery is dead-lettered (throttled answers count none). */
  maxAttempts: z.coerce.number().int().min(1).max(100),
  /** How long a delivery may keep being retried, throttled answers included. */
  maxRetryHours: z.coerce
    .number()
    .positive()
    .max(24 * 30),
  backoffBaseMs: ms(1),
  backoffMaxMs: ms(1),
};

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
  /** The auth database; empty: embedded PGlite under `<dataDir>/auth`, this node's alone. */
  databaseUrl: z.string().refine((v) => v === '' || /^postgres(ql)?:\/\//.test(v), {
    message: 'expected a postgres:// URL (or empty for the embedded database under dataDir)',
  }),
  /** fsync policy of the local redis-server's append-only file (ignored with a Redis URL). */
  appendFsync: z.enum(['always', 'everysec']),
  /** How long a Redis command may take before it fails (ingress then answers 503). */
  redisCommandTimeoutMs: ms(100),
  /**
   * Replicas (WAIT) that must hold a message before ingress acknowledges it and before its
   * commit is confirmed (`?wait=1`, WebSocket `ack`); 0: do not wait.
   */
  redisReplicaWait: z.coerce.number().int().min(0).max(5),
  /** How long that WAIT may take; a message not copied in time gets 503 (ingress) or 202 (commit). */
  redisReplicaWaitMs: ms(1),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  /** `json` lines for log collectors, or `pretty` (pino-pretty) for people in a terminal. */
  logFormat: z.enum(['json', 'pretty']),
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
    membersMayCreate: flag,
    maxCreatedMembers: z.coerce.number().int().min(2).max(10_000),
    createPerHour: z.coerce.number().min(0).max(1_000_000),
  }),
  /** Tags and tag expressions (src/notify/, README "Tags"). */
  tags: z.object({
    /** Ids, add and remove together, one delta upload may carry. */
    maxUpload: z.coerce.number().int().min(1).max(1_000_000),
    /** Body bytes of a delta upload (POST /v1/tags/:tag/members); other routes: http.maxBodyBytes. */
    maxUploadBytes: z.coerce
      .number()
      .int()
      .min(256)
      .max(256 * 1024 * 1024),
    maxExpressionLength: z.coerce.number().int().min(1).max(100_000),
    /** Tags one expression may name (each use counts); FCM caps conditions at 5, we do not. */
    maxExpressionTags: z.coerce.number().int().min(1).max(10_000),
    /** Members read from a tag per round trip while an expression is expanded. */
    expandPageSize: z.coerce.number().int().min(1).max(100_000),
  }),
  http: z.object({
    maxBodyBytes: z.coerce
      .number()
      .int()
      .min(256)
      .max(64 * 1024 * 1024),
    waitTimeoutMs: ms(100),
    maxBodyChars: z.coerce.number().int().min(1).max(1_000_000),
    /**
     * Comma-separated origins browser pages may call the HTTP API from (CORS), `*` for any;
     * empty: the same as ws.allowedOrigins.
     */
    allowedOrigins: z.string().refine((v) => list(v).every((o) => o === '*' || ORIGIN.test(o)), {
      message: 'expected * or comma-separated origins such as https://app.example.com (no path)',
    }),
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
    allowedOrigins: z.string().refine((v) => list(v).every((o) => ORIGIN.test(o)), {
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
    /** Send attempts (not 429s) and hours before a text is dead-lettered; backoff. */
    ...retrySettings,
    sendTimeoutMs: ms(100),
    /** Twilio requests in flight at once, over all numbers. */
    maxInFlight: z.coerce.number().int().min(1).max(1000),
    /** Jobs held in memory per sending number; more wait in the outbox's retry set. */
    maxQueuedPerNumber: z.coerce.number().int().min(1).max(100_000),
  }),
  /** The outbox runner, and the defaults of channel plug-ins (SMS has its own, in `sms`). */
  outbox: z.object({
    /** Outbox jobs read per round. */
    readBatch: z.coerce.number().int().min(1).max(10_000),
    /** Sends in flight at once, per channel. */
    maxInFlight: z.coerce.number().int().min(1).max(10_000),
    /** Jobs held in memory per lane (a member of a channel); more wait in the retry set. */
    maxQueuedPerLane: z.coerce.number().int().min(1).max(100_000),
    /** How long one send may take before it counts as possibly in flight. */
    sendTimeoutMs: ms(100),
    ...retrySettings,
  }),
  /** The built-in webhook channel (its endpoints are set over the admin API). */
  webhooks: z.object({
    /** How long one POST to an endpoint may take; a timeout is retried. */
    timeoutMs: ms(100),
  }),
  ...PEOPLE_SETTINGS,
  /** Plug-ins (DESIGN §7), by name; lists, so set in a config file only. */
  channels: pluginList('channels'),
  sources: pluginList('sources'),
  validators: pluginList('validators'),
  handlers: pluginList('handlers'),
  shutdownTimeoutMs: ms(100),
});

export type Config = z.infer<typeof ConfigSchema>;

const CONFIG_DIR = new URL('../config/', import.meta.url);

/** Reads the JSON defaults shipped in `config/`, with `config/local.json` on top. */
export function fileDefaults(): Record<string, unknown> {
  const base = readConfigFile(fileURLToPath(new URL('default.json', CONFIG_DIR)));
  const local = fileURLToPath(new URL('local.json', CONFIG_DIR));
  return existsSync(local) ? merge(base, readConfigFile(local)) : base;
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
      // A list has no sensible variable or flag: it is set in a config file.
      if (Array.isArray(value)) continue;
      if (isPlainObject(value)) {
        walk(value, p);
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
  /** `THRESHOLD_CONFIG` names a config file (as `--config` does), besides the settings' own. */
  env?: NodeJS.ProcessEnv;
  /** Setting flags, and `--config FILE`. */
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
  const values = parseFlags(argv, leaves);

  // `--config ''` or `THRESHOLD_CONFIG=` means none, like any empty setting.
  const configFile = values.config || env.THRESHOLD_CONFIG || undefined;
  let raw = structuredClone(defaults);
  if (configFile !== undefined) {
    const path = resolve(configFile);
    const file = readConfigFile(path);
    const unknown = unknownKeys(file, defaults);
    if (unknown.length > 0) {
      throw new ConfigError(
        unknown[0] as string,
        `config file ${path}: unknown setting ${unknown.join(', ')}; run \`threshold settings\` for the list`,
      );
    }
    raw = merge(raw, file);
  }

  for (const leaf of leaves) {
    const value = env[leaf.env];
    // An empty variable (`THRESHOLD_PORT=` from an unset compose variable) means "not set",
    // never 0; string settings that may be empty are empty by default anyway.
    if (value !== undefined && value !== '') setPath(raw, leaf.path, value);
  }

  for (const leaf of leaves) {
    const value = values[leaf.flag];
    if (value !== undefined && value !== '') setPath(raw, leaf.path, value);
  }

  const merged = merge(raw, overrides);
  // Channels from overrides (tests, launchers) name files relative to the working directory.
  const parsed = ConfigSchema.safeParse(withResolvedModules(merged, process.cwd()));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = (issue?.path ?? []).map(String);
    const leaf = leaves.find((l) => l.path.join('.') === path.join('.'));
    const name = path.join('.') || 'config';
    const where = leaf
      ? ` (${leaf.env} or --${leaf.flag})`
      : configFile !== undefined
        ? ` (in ${resolve(configFile)})`
        : '';
    throw new ConfigError(
      name,
      `invalid setting ${name}${where}: ${issue?.message ?? 'invalid value'}`,
    );
  }
  return parsed.data;
}

/** Every option takes a value, so each flag is a string (or absent). */
function parseFlags(argv: string[], leaves: Leaf[]): Record<string, string | undefined> {
  try {
    return parseArgs({
      args: argv,
      options: {
        ...Object.fromEntries(leaves.map((l) => [l.flag, { type: 'string' as const }])),
        config: { type: 'string' as const },
      },
      allowPositionals: false,
      strict: true,
    }).values as Record<string, string | undefined>;
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

/** True when the node listens only on this machine, the one place open development mode may run. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
