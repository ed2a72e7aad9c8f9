/**
 * A local Redis Cluster of `redis-server` children (embedded.ts), for `threshold cluster
 * --redis-cluster N` and the tests: one server per directory `<dir>/<n>/`, joined once by
 * `redis-cli --cluster create`, and by their own nodes.conf on every start after that.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { ConfigError, ThresholdError, UnavailableError } from '../errors.ts';
import {
  type EmbeddedRedis,
  EmbeddedRedisStartError,
  freePort,
  startEmbeddedRedis,
} from './embedded.ts';

export interface EmbeddedRedisClusterOptions {
  /** One subdirectory per server (`1/`, `2/`, …) with its nodes.conf and append-only file. */
  dir: string;
  /** How many masters; `redis-cli --cluster create` wants at least 3. */
  masters: number;
  /** Replicas per master. @default 0 */
  replicas?: number;
  /** @default 'everysec' */
  appendFsync?: 'always' | 'everysec' | 'no';
  /**
   * One port per server, `masters × (1 + replicas)` of them, in directory order.
   * @default the ports in their nodes.conf on a restart, else free ones
   */
  ports?: number[];
  /** `--cluster-node-timeout`: how long a master may be unreachable before it is failed over. @default 5_000 */
  nodeTimeoutMs?: number;
  /** How long `redis-cli --cluster create`, then the wait for `cluster_state:ok`, may take. @default 30_000 */
  readyTimeoutMs?: number;
  /** Told what it does next (`creating the cluster`), for a progress line. */
  onStep?: (what: string) => void;
}

export interface EmbeddedRedisClusterNode extends EmbeddedRedis {
  /** Its directory: restart it there, on the same port, with the same cluster arguments. */
  readonly dir: string;
}

export interface EmbeddedRedisCluster {
  /** Every server's `redis://127.0.0.1:<port>`, masters first. */
  readonly urls: string[];
  /** The servers, in the order of `urls`. */
  readonly nodes: EmbeddedRedisClusterNode[];
  /** `urls` joined with commas: a seed list for THRESHOLD_REDIS_URL. */
  readonly url: string;
  /** Stops every server (SIGTERM: each flushes its append-only file). */
  stop(): Promise<void>;
}

const run = promisify(execFile);
// The cluster bus listens on port + 10000 (Redis 6 has no `cluster-port` to choose another).
const BUS_PORT_OFFSET = 10_000;

export async function startEmbeddedRedisCluster(
  options: EmbeddedRedisClusterOptions,
): Promise<EmbeddedRedisCluster> {
  const { dir, masters, replicas = 0, nodeTimeoutMs = 5_000, readyTimeoutMs = 30_000 } = options;
  const count = masters * (1 + replicas);
  const whole = Number.isInteger(masters) && Number.isInteger(replicas);
  if (!whole || masters < 3 || replicas < 0 || (options.ports && options.ports.length !== count)) {
    throw new ConfigError(
      'masters',
      'a Redis Cluster needs 3 or more masters, 0 or more replicas each, and, if ports are given, one per server',
    );
  }
  const dirs = Array.from({ length: count }, (_, i) => join(dir, String(i + 1)));
  const ports = options.ports ?? (await Promise.all(dirs.map(portInNodesConf)));
  // prettier-ignore
  const extraArgs = [
    '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', String(nodeTimeoutMs),
    // A replica's first sync starts at once, not after the default 5 s wait for more replicas.
    '--repl-diskless-sync-delay', '0',
  ];
  const onStep = options.onStep ?? (() => {});
  onStep(`starting ${count} redis-servers`);
  const started = await Promise.allSettled(
    dirs.map((d, i) => startServer(d, ports[i], { appendFsync: options.appendFsync, extraArgs })),
  );
  const nodes = started.flatMap((s, i) =>
    s.status === 'fulfilled' ? [{ ...s.value, dir: dirs[i] as string }] : [],
  );
  // Replicas before masters: a master stopped with replicas waits (up to 10 s) for them to catch up.
  let stopOrder = [nodes];
  const stop = async (): Promise<void> => {
    for (const group of stopOrder) await Promise.all(group.map((n) => n.stop()));
  };
  try {
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    const deadline = Date.now() + readyTimeoutMs;
    // Asked of the servers, not of nodes.conf: every fresh server writes one at once, so a
    // first start that failed before the create leaves nodes.conf files but no cluster.
    const known = await Promise.all(nodes.map((n) => knownNodes(n.url)));
    if (known.every((k) => k === '1')) {
      onStep('creating the cluster (redis-cli --cluster create)');
      await create(nodes, replicas, readyTimeoutMs);
    } else if (known.some((k) => k !== String(count))) {
      throw new ThresholdError(
        'redis_cluster_mismatch',
        500,
        `${dir} holds another Redis Cluster than ${masters} masters with ${replicas} replicas each ` +
          `(its servers know ${known.join(', ')} nodes); remove the directory to start afresh`,
      );
    }
    onStep('waiting for cluster_state:ok');
    const roles = await Promise.all(nodes.map((n) => waitOk(n.url, deadline, readyTimeoutMs)));
    const masterNodes = nodes.filter((_, i) => roles[i] === 'master');
    const replicaNodes = nodes.filter((_, i) => roles[i] !== 'master');
    stopOrder = [replicaNodes, masterNodes];
    const ordered = [...masterNodes, ...replicaNodes];
    const urls = ordered.map((n) => n.url);
    return { urls, nodes: ordered, url: urls.join(','), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function startServer(
  dir: string,
  port: number | undefined,
  options: { appendFsync?: 'always' | 'everysec' | 'no'; extraArgs: string[] },
): Promise<EmbeddedRedis> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startEmbeddedRedis({ dir, port: port ?? (await clusterPort()), ...options });
    } catch (err) {
      // A port we picked (or its bus port) was taken before redis-server bound it: pick again.
      const taken = err instanceof EmbeddedRedisStartError && /already in use/i.test(err.log);
      if (port !== undefined || !taken || attempt >= 3) throw err;
    }
  }
}

/** A free port whose bus port (port + 10000) is free too. */
async function clusterPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freePort();
    if (port + BUS_PORT_OFFSET <= 65_535 && (await canListen(port + BUS_PORT_OFFSET))) return port;
  }
  throw new UnavailableError(
    'found no free port whose Redis Cluster bus port (+10000) is free too',
  );
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The port this server had before (the `myself` line of its nodes.conf), if it ran before. */
async function portInNodesConf(dir: string): Promise<number | undefined> {
  const conf = await readFile(join(dir, 'nodes.conf'), 'utf8').catch(() => '');
  const port = /^\S+ [^\s:]*:(\d+)@\S* \S*myself/m.exec(conf)?.[1];
  return port ? Number(port) : undefined;
}

async function create(nodes: EmbeddedRedis[], replicas: number, timeoutMs: number): Promise<void> {
  const hosts = nodes.map((n) => `127.0.0.1:${n.port}`);
  // prettier-ignore
  const args = ['--cluster', 'create', ...hosts, '--cluster-replicas', String(replicas), '--cluster-yes'];
  try {
    await run('redis-cli', args, { timeout: timeoutMs });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string; stderr?: string; killed?: boolean };
    if (e.code === 'ENOENT') {
      throw new ThresholdError(
        'redis_not_installed',
        500,
        'could not run "redis-cli", which creates the Redis Cluster; install the Redis tools ' +
          '(for example `apt-get install redis-tools` or `brew install redis`)',
        { cause: err },
      );
    }
    const why = e.killed
      ? `no answer within ${timeoutMs} ms`
      : `${e.stdout ?? ''}${e.stderr ?? ''}`;
    const tail = why.trim().split('\n').slice(-10).join('\n');
    throw new ThresholdError(
      'redis_cluster_create_failed',
      500,
      `redis-cli --cluster create ${hosts.join(' ')} failed:\n${tail}`,
      { cause: err },
    );
  }
}

/**
 * Waits until the server says `cluster_state:ok`; a replica also until its link to its master
 * is up and the append-only file it rewrites after its first sync is written (until then it
 * refuses to stop: "Writing initial AOF, can't exit"). Resolves with its role.
 */
function waitOk(url: string, deadline: number, timeoutMs: number): Promise<string> {
  return withClient(url, async (client) => {
    for (;;) {
      const info = `${await clusterInfo(client)}${await client.info()}`;
      const role = /^role:(\w+)/m.exec(info)?.[1] ?? 'unknown';
      const pending = [
        !/^cluster_state:ok/m.test(info) && 'cluster_state is not ok',
        role !== 'master' && !/^master_link_status:up/m.test(info) && 'its master link is down',
        /^aof_rewrite_(in_progress|scheduled):1/m.test(info) && 'it rewrites its append-only file',
      ].filter(Boolean);
      if (pending.length === 0) return role;
      if (Date.now() > deadline) {
        throw new UnavailableError(
          `Redis Cluster server ${url} (${role}) not ready within ${timeoutMs} ms: ${pending.join(', ')}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  });
}

function knownNodes(url: string): Promise<string | undefined> {
  return withClient(
    url,
    async (c) => /^cluster_known_nodes:(\d+)/m.exec(await clusterInfo(c))?.[1],
  );
}

async function clusterInfo(client: Redis): Promise<string> {
  return String(await client.call('CLUSTER', 'INFO'));
}

async function withClient<T>(url: string, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    return await use(client);
  } finally {
    client.disconnect();
  }
}
