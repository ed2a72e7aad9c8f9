import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type { Config } from './config.ts';
import { fail, type Finding, ok, reason, redact, warn } from './doctor-checks.ts';
import { seedUrls } from './redis/client.ts';
import { nodeAccess } from './redis/connections.ts';

/**
 * `threshold doctor`'s Redis checks: reachable, version, persistence, cluster. What the code
 * needs: XAUTOCLAIM and `ZRANGE … BYLEX` (Redis 6.2) everywhere; on a Redis Cluster also
 * sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`: Redis 7.0) for the stream wake-ups.
 */
const MIN_VERSION = { standalone: [6, 2], cluster: [7, 0] } as const;
const SLOTS = 16_384;
const FIX_URL = 'fix redisUrl (THRESHOLD_REDIS_URL, --redis-url)';

export async function checkRedis(
  config: Pick<Config, 'redisUrl' | 'dataDir' | 'appendFsync'>,
  timeoutMs: number,
): Promise<Finding[]> {
  if (!config.redisUrl) return [await localRedisServer(config, timeoutMs)];
  const seeds = seedUrls(config.redisUrl);
  const opened: Redis[] = [];
  const open = async (url: string, options = {}) => {
    const client = new Redis(url, {
      ...options,
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    // connect() only says "Connection is closed."; the error event says why (ECONNREFUSED…).
    let why: unknown;
    client.on('error', (err) => (why ??= err));
    opened.push(client);
    await client.connect().catch((err: unknown) => {
      throw why ?? err;
    });
    return client;
  };
  try {
    let seed: Redis | undefined;
    let seedUrl = '';
    const errors: string[] = [];
    for (const url of seeds) {
      try {
        seed = await open(url);
        seedUrl = url;
        break;
      } catch (err) {
        errors.push(`${redact(url)}: ${reason(err)}`);
      }
    }
    if (!seed) {
      return [fail('redis', `cannot reach ${errors.join('; ')}: start Redis there, or ${FIX_URL}`)];
    }
    const findings: Finding[] = [ok('redis', `${redact(seedUrl)} answers`)];
    const clustered = /^cluster_enabled:1/m.test(await seed.info('cluster'));
    let servers: { name: string; client: Redis }[] = [{ name: redact(seedUrl), client: seed }];
    if (clustered) {
      const { finding, masters } = await clusterState(seed);
      const access = nodeAccess(seedUrl);
      const reached = await Promise.allSettled(
        masters.map(async (address) => {
          const [host, port] = splitAddress(address);
          const url = `${new URL(seedUrl).protocol}//${host}:${port}`;
          return { name: address, client: await open(url, access) };
        }),
      );
      // Down but not yet failed by the others (cluster_node_timeout): its slots answer nothing.
      const silent = reached.flatMap((r, i) =>
        r.status === 'rejected' ? [`${masters[i]} (${reason(r.reason)})`] : [],
      );
      servers = reached.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      findings.push(
        silent.length === 0
          ? finding
          : fail(
              'redis cluster',
              `masters that do not answer: ${silent.join(', ')}; their slots are unreachable until they come back or a replica takes over`,
            ),
      );
    } else {
      findings.push(ok('redis cluster', 'standalone server (not a Redis Cluster)'));
    }
    // No master answers: nothing to ask a version or persistence of (the cluster line says why).
    if (servers.length === 0) return findings;
    findings.push(await version(servers, clustered ? 'cluster' : 'standalone'));
    findings.push(await persistence(servers, clustered));
    return findings;
  } catch (err) {
    return [fail('redis', `${redact(seeds[0] ?? '')}: ${reason(err)}`)];
  } finally {
    for (const client of opened) client.disconnect();
  }
}

/** No Redis URL: the node starts its own redis-server, so that must be installed and new enough. */
async function localRedisServer(
  config: Pick<Config, 'dataDir' | 'appendFsync'>,
  timeoutMs: number,
): Promise<Finding> {
  let text: string;
  try {
    text = (await promisify(execFile)('redis-server', ['--version'], { timeout: timeoutMs }))
      .stdout;
  } catch {
    return fail(
      'redis',
      'no redisUrl, and redis-server is not on PATH to start a local one: install it (apt-get install redis-server, brew install redis), or set redisUrl (THRESHOLD_REDIS_URL, --redis-url)',
    );
  }
  const found = /v=(\d+\.\d+\.\d+)/.exec(text)?.[1] ?? 'unknown';
  if (!atLeast(found, MIN_VERSION.standalone)) {
    return fail('redis', `the local redis-server is ${found}; Threshold needs 6.2 or newer`);
  }
  return ok(
    'redis',
    `no redisUrl: the node starts its own redis-server ${found} under ${config.dataDir} (append-only file on, appendfsync ${config.appendFsync})`,
  );
}

async function clusterState(seed: Redis): Promise<{ finding: Finding; masters: string[] }> {
  const info = String(await seed.call('CLUSTER', 'INFO'));
  const field = (name: string) => new RegExp(`^${name}:(\\S+)`, 'm').exec(info)?.[1] ?? '?';
  const nodes = String(await seed.call('CLUSTER', 'NODES'));
  const all = nodes
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => /(^|,)master(,|$)/.test(f[2] ?? ''));
  const masters = all
    .filter((f) => !/fail/.test(f[2] ?? ''))
    .map((f) => (f[1] ?? '').split('@')[0] as string);
  const failed = all.length - masters.length;
  const [state, assigned, okSlots] = [
    field('cluster_state'),
    field('cluster_slots_assigned'),
    field('cluster_slots_ok'),
  ];
  const shape = `Redis Cluster of ${masters.length} masters${failed ? ` (and ${failed} failed)` : ''}`;
  if (state === 'ok' && Number(assigned) === SLOTS && Number(okSlots) === SLOTS) {
    return {
      finding: ok('redis cluster', `${shape}, cluster_state ok, all ${SLOTS} slots covered`),
      masters,
    };
  }
  return {
    finding: fail(
      'redis cluster',
      `${shape}: cluster_state ${state}, ${assigned} of ${SLOTS} slots assigned, ${okSlots} ok; assign every slot to a live master (redis-cli --cluster fix)`,
    ),
    masters,
  };
}

async function version(
  servers: { name: string; client: Redis }[],
  mode: 'standalone' | 'cluster',
): Promise<Finding> {
  const versions = await Promise.all(
    servers.map(
      async (s) => /^redis_version:(\S+)/m.exec(await s.client.info('server'))?.[1] ?? '0.0.0',
    ),
  );
  const [major, minor] = MIN_VERSION[mode];
  const old = servers.filter((_, i) => !atLeast(versions[i] as string, MIN_VERSION[mode]));
  const shown = [...new Set(versions)].join(', ');
  if (old.length === 0) return ok('redis version', `Redis ${shown}`);
  const why =
    mode === 'cluster'
      ? 'a Redis Cluster needs 7.0 or newer (sharded pub/sub)'
      : 'Threshold needs 6.2 or newer (XAUTOCLAIM, ZRANGE BYLEX)';
  return fail(
    'redis version',
    `Redis ${shown} on ${old.map((s) => s.name).join(', ')}: ${why}; upgrade to ${major}.${minor}+`,
  );
}

/** Whether what Redis holds survives a restart: the append-only file, else RDB snapshots. */
async function persistence(
  servers: { name: string; client: Redis }[],
  clustered: boolean,
): Promise<Finding> {
  const each = await Promise.all(servers.map((s) => serverPersistence(s.client)));
  const bad = each.flatMap((f, i) =>
    f.outcome === 'ok' ? [] : [`${servers[i]?.name}: ${f.detail}`],
  );
  if (bad.length === 0) {
    const texts = [...new Set(each.map((f) => f.detail))];
    return ok('redis persistence', `${clustered ? 'every master: ' : ''}${texts.join('; ')}`);
  }
  const worst = each.some((f) => f.outcome === 'FAIL') ? fail : warn;
  return worst('redis persistence', clustered ? bad.join('; ') : (each[0]?.detail ?? ''));
}

async function serverPersistence(client: Redis): Promise<Finding> {
  const SET_AOF = 'set appendonly yes (appendfsync everysec), see README Durability';
  let settings: Record<string, string>;
  try {
    const reply = (await client.call('CONFIG', 'GET', '*')) as string[];
    settings = {};
    for (let i = 0; i + 1 < reply.length; i += 2)
      settings[reply[i] as string] = reply[i + 1] as string;
  } catch {
    // Managed Redis often refuses CONFIG; INFO still says whether the append-only file is on.
    const aof = /^aof_enabled:1/m.test(await client.info('persistence'));
    return aof
      ? ok('', 'append-only file on (CONFIG is refused, so its fsync policy is unknown)')
      : warn(
          '',
          `CONFIG is refused and INFO says the append-only file is off: make sure your provider keeps data across restarts, or ${SET_AOF}`,
        );
  }
  const { appendonly, appendfsync, save } = settings;
  if (appendonly === 'yes') {
    return appendfsync === 'no'
      ? warn(
          '',
          'append-only file on, but appendfsync no: the OS decides when writes reach the disk; set appendfsync everysec',
        )
      : ok('', `append-only file on (appendfsync ${appendfsync})`);
  }
  if (save) {
    return warn(
      '',
      `only RDB snapshots (save "${save}"): a crash loses what came after the last one; ${SET_AOF}`,
    );
  }
  return warn(
    '',
    `nothing persists (appendonly no, save ""): a restart loses every room and message; ${SET_AOF}`,
  );
}

function atLeast(version: string, [major, minor]: readonly [number, number]): boolean {
  const [a = 0, b = 0] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

function splitAddress(address: string): [string, string] {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at).replace(/^\[|\]$/g, ''), address.slice(at + 1)];
}
