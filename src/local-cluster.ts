/**
 * `threshold cluster --nodes N`: a whole mesh on this machine for trying things out, a
 * local redis-server (or, with `--redis-cluster M`, a local Redis Cluster of M masters) and
 * N relay node processes on consecutive loopback ports.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Config, loadConfig } from './config.ts';
import { ConfigError, ThresholdError } from './errors.ts';
import { settingFlags } from './settings-command.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { waitReady, waitSettled } from './local-cluster-wait.ts';
import { Progress } from './progress.ts';
import { onStopSignals, signalExitCode } from './stop-signals.ts';
import { startEmbeddedRedisCluster } from './redis/embedded-cluster.ts';
import { startEmbeddedRedis } from './redis/embedded.ts';

const BIN = fileURLToPath(new URL('../bin/threshold.js', import.meta.url));
const COUNT_FLAGS = {
  nodes: { setting: 'nodes', min: 1, max: 16 },
  'redis-cluster': { setting: 'redisCluster', min: 3, max: 9 },
} as const;
export const CLUSTER_HELP =
  (): string => `Usage: threshold cluster [--nodes N] [--redis-cluster M] [--config FILE] [--<setting> VALUE ...]

Runs a local mesh: a redis-server and N relay nodes on consecutive ports from --port, under
<data-dir>/cluster; Ctrl-C stops them all.

  --nodes N          relay nodes to start, ${COUNT_FLAGS.nodes.min} to ${COUNT_FLAGS.nodes.max} (default 3)
  --redis-cluster M  a local Redis Cluster of M masters (${COUNT_FLAGS['redis-cluster'].min} to ${COUNT_FLAGS['redis-cluster'].max}) under <data-dir>/redis-cluster
                     instead of the redis-server; not with --redis-url
  --config FILE      a JSON settings file over config/default.json, for every node
  --help             show this text

Other setting flags go to every node (--port is the first node's; --node-id and --redis-url are set per node):
${settingFlags()}`;

const NOT_WITH_REDIS_URL =
  '--redis-cluster starts a Redis Cluster of its own; it cannot be combined with --redis-url or THRESHOLD_REDIS_URL';
const READY_TIMEOUT_MS = 30_000;
const SETTLE_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 15_000;

interface Member {
  id: string;
  url: string;
  child: ChildProcess;
  log: string;
  exited: Promise<number | null>;
  /** The last line the node wrote to stderr: why it refused to start, if it did. */
  lastError(): string;
}

/**
 * Splits `--nodes N` and `--redis-cluster M` (masters) off the flags; every other flag is
 * passed on to each node.
 */
export function parseClusterArgs(argv: string[]): {
  nodes: number;
  redisCluster: number | undefined;
  rest: string[];
} {
  const rest: string[] = [];
  const counts: Partial<Record<keyof typeof COUNT_FLAGS, number>> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const match = /^--(nodes|redis-cluster)(?:=(.*))?$/.exec(arg);
    if (!match) {
      rest.push(arg);
      continue;
    }
    const flag = match[1] as keyof typeof COUNT_FLAGS;
    const { setting, min, max } = COUNT_FLAGS[flag];
    const value = Number(match[2] ?? argv[++i]);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ConfigError(setting, `--${flag} must be a whole number from ${min} to ${max}`);
    }
    counts[flag] = value;
  }
  const redisCluster = counts['redis-cluster'];
  if (redisCluster !== undefined && rest.some((a) => /^--redis-url(=|$)/.test(a))) {
    throw new ConfigError('redisCluster', NOT_WITH_REDIS_URL);
  }
  return { nodes: counts.nodes ?? 3, redisCluster, rest };
}

/**
 * Runs until SIGINT or SIGTERM, then stops every node gracefully (SIGTERM) and the Redis it
 * started. Resolves with the exit code: 0 when every node stopped cleanly.
 */
export async function runCluster(argv: string[], out = process.stdout): Promise<number> {
  const { nodes: count, redisCluster: masters, rest } = parseClusterArgs(argv);
  // Validates the flags (and the environment) once, before anything starts.
  const config = loadConfig({ argv: rest });
  if (masters && config.redisUrl) throw new ConfigError('redisCluster', NOT_WITH_REDIS_URL);
  // Accounts are shared only through a Postgres: embedded PGlite is one process's, so without
  // a database URL each node gets a data directory (and an auth database) of its own.
  const shared = Boolean(config.databaseUrl);
  const flags = withoutFlags(rest, [
    'port',
    'node-id',
    'redis-url',
    ...(shared ? [] : ['data-dir']),
  ]);
  // The nodes and Redis run in sessions of their own, so a terminal's Ctrl-C reaches only us
  // (and npx's forwarded copy of it), and we stop them in order: nodes, then Redis.
  const members: Member[] = [];
  let forced = false;
  const stopRequested = onStopSignals({
    repeated: () => out.write('already stopping; a third signal (Ctrl-C again) forces the exit\n'),
    forced: (signal) => {
      out.write('forced exit: killing every node (SIGKILL) and stopping Redis\n');
      forced = true;
      process.exit(signalExitCode(signal));
    },
  });
  // Should we exit without stopping them (an error, a forced exit), the nodes go too.
  process.once('exit', () => {
    for (const m of members) {
      if (m.child.exitCode === null) m.child.kill(forced ? 'SIGKILL' : 'SIGTERM');
    }
  });
  if (!config.redisUrl) lockDataDir(config.dataDir, 'cluster');

  const dir = resolve(config.dataDir, 'cluster');
  await mkdir(dir, { recursive: true });
  // On stderr: stdout keeps the lines that say what runs where.
  const progress = new Progress({ total: config.redisUrl ? 2 : 3 });
  const redis = await startRedis(config, masters, progress, out);
  const redisUrl = redis.url;

  const stopAll = async () => {
    for (const m of members) m.child.kill('SIGTERM');
    const codes = await Promise.all(
      members.map((m) =>
        Promise.race([
          m.exited,
          sleep(STOP_TIMEOUT_MS).then(() => {
            m.child.kill('SIGKILL');
            return -1;
          }),
        ]),
      ),
    );
    await redis.stop();
    return codes.every((c) => c === 0) ? 0 : 1;
  };
  const stopOnSignal = async () => {
    out.write('stopping every node (SIGTERM), then Redis\n');
    const code = await stopAll();
    out.write(
      code === 0 ? 'stopped\n' : 'stopped; some nodes did not stop cleanly (see their logs)\n',
    );
    return code;
  };

  try {
    progress.step(`starting ${count} relay node${count === 1 ? '' : 's'}`);
    for (let i = 0; i < count; i++) {
      const id = `node-${i + 1}`;
      const port = config.port + i;
      const log = resolve(dir, `${id}.log`);
      const file = createWriteStream(log, { flags: 'a' });
      const own = shared ? [] : ['--data-dir', resolve(dir, id)];
      // prettier-ignore
      const child = spawn(process.execPath, [BIN, 'node', ...flags, ...own, '--port', String(port), '--node-id', id, '--redis-url', redisUrl], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      child.stdout?.pipe(file);
      child.stderr?.pipe(file);
      // A node that refuses to start says why in one line on stderr (a taken port...).
      let lastError = '';
      child.stderr?.on('data', (chunk: Buffer) => {
        const lines = chunk.toString('utf8').trim().split('\n');
        lastError = lines[lines.length - 1] ?? lastError;
      });
      // 'close': after stderr is drained, so lastError holds the node's last words.
      const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      members.push({
        id,
        url: `http://${host}:${port}`,
        child,
        log,
        exited,
        lastError: () => lastError,
      });
    }
    let readyCount = 0;
    progress.update(`0/${count} ready`);
    const started = members.map(async (m) => {
      const outcome = await Promise.race([
        waitReady(m.url, READY_TIMEOUT_MS).then(() => {
          progress.update(`${++readyCount}/${count} ready`);
          return 'ready' as const;
        }),
        m.exited.then((code) => `exited with code ${code}` as const),
      ]);
      if (outcome === 'ready') return;
      const why = m.lastError().replace(/^threshold: /, '');
      throw new ThresholdError(
        'node_failed',
        500,
        `${m.id} ${outcome}${why ? `: ${why}` : ''} (log: ${m.log})`,
      );
    });
    const ready = Promise.all(started).then(() => 'ready' as const);
    if ((await Promise.race([ready, stopRequested])) !== 'ready') {
      progress.done();
      return await stopOnSignal();
    }
    progress.step('waiting for the partitions to settle');
    const urls = members.map((m) => m.url);
    const settled = await Promise.race([
      waitSettled(urls, config.adminToken, SETTLE_TIMEOUT_MS, (n) =>
        progress.update(`${n}/${count} nodes agree`),
      ),
      stopRequested.then(() => 'stop' as const),
    ]);
    progress.done();
    if (settled === 'stop') return await stopOnSignal();
    if (!settled) {
      out.write(
        `partitions not settled after ${SETTLE_TIMEOUT_MS / 1000} s; GET /v1/cluster on each node shows how it sees them\n`,
      );
    }
  } catch (err) {
    progress.done();
    await stopAll();
    throw err;
  }

  for (const m of members) {
    out.write(`${m.id}  ${m.url}  ready (pid ${m.child.pid}, log ${m.log})\n`);
  }
  const scrape = resolve(dir, 'prometheus.yml');
  await writeFile(scrape, prometheusConfig(members.map((m) => new URL(m.url).host)));
  out.write(`prometheus --config.file=${scrape} scrapes every node\n`);
  out.write(
    shared
      ? 'accounts: every node uses the Postgres of THRESHOLD_DATABASE_URL\n'
      : `accounts: no THRESHOLD_DATABASE_URL, so each node has its own (embedded, under ${dir}/node-<n>/auth): a phone signed up on one node is unknown to the others, and without THRESHOLD_JWT_SECRET its tokens work there only; set THRESHOLD_DATABASE_URL to share them\n`,
  );
  out.write(
    `${count} relay nodes share ${masters ? `a Redis Cluster of ${masters} masters` : redisUrl}; GET /v1/cluster on any of them shows the mesh. Ctrl-C stops everything.\n`,
  );
  for (const m of members) {
    void m.exited.then((code) => {
      out.write(`${m.id} exited with code ${code}; see ${m.log}\n`);
    });
  }
  await stopRequested;
  return stopOnSignal();
}

/**
 * The Redis every node is given: THRESHOLD_REDIS_URL's, or a local redis-server, or with
 * `--redis-cluster` a local Redis Cluster; one line each on `out`. `stop()` stops what was
 * started here.
 */
async function startRedis(
  config: Config,
  masters: number | undefined,
  progress: Progress,
  out: NodeJS.WritableStream,
): Promise<{ url: string; stop(): Promise<void> }> {
  if (config.redisUrl) {
    out.write(`redis   ${config.redisUrl}\n`);
    return { url: config.redisUrl, stop: async () => {} };
  }
  if (masters) {
    progress.step(`starting a local Redis Cluster of ${masters} masters`);
    const cluster = await startEmbeddedRedisCluster({
      dir: resolve(config.dataDir, 'redis-cluster'),
      masters,
      appendFsync: config.appendFsync,
      onStep: (what) => progress.update(what),
    });
    for (const node of cluster.nodes) {
      progress.print(`redis   ${node.url} (local Redis Cluster master, pid ${node.pid})`, out);
    }
    return cluster;
  }
  progress.step('starting a local redis-server');
  const redis = await startEmbeddedRedis({
    dir: resolve(config.dataDir, 'cluster', 'redis'),
    appendFsync: config.appendFsync,
  });
  progress.print(`redis   ${redis.url} (local redis-server, pid ${redis.pid})`, out);
  return redis;
}

/** The same scrape job as cluster/prometheus.yml, for the nodes on this machine. */
export function prometheusConfig(targets: string[]): string {
  return [
    '# Written by `threshold cluster`: scrapes every node it started.',
    'global:',
    '  scrape_interval: 5s',
    'scrape_configs:',
    '  - job_name: threshold',
    '    metrics_path: /metrics',
    '    static_configs:',
    `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
    '',
  ].join('\n');
}

function withoutFlags(argv: string[], names: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const name = /^--([^=]+)/.exec(arg)?.[1];
    if (name && names.includes(name)) {
      if (!arg.includes('=')) i++;
      continue;
    }
    out.push(arg);
  }
  return out;
}
