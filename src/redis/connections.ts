import { resolve } from 'node:path';
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config.ts';
import { UnavailableError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type EmbeddedRedis, startEmbeddedRedis } from './embedded.ts';
import { CLUSTER_OPTIONS, type RedisClient, seedUrls } from './client.ts';
import { defineScripts } from './scripts.ts';
import { BlockingWait } from './streams.ts';
import { WakeWait } from './stream-wakes.ts';

/**
 * A node's Redis: its own `redis-server` under `dataDir` when no URL is set; a Redis Cluster
 * when the URL names one of its nodes (or several, comma-separated), found out at start.
 * Connections: commands (scripts defined, bounded by redisCommandTimeoutMs), the pub/sub
 * subscriber, and the waits for new funnel and outbox entries, which must not queue behind
 * commands: on one server an XREAD BLOCK on a connection of its own each, on a cluster
 * sharded pub/sub wake-ups (stream-wakes.ts) on one more cluster client. With replica waits
 * (redisReplicaWait > 0), the funnel's writes and the commits each get one more: their WAIT
 * holds its connection until the replicas answer (up to redisReplicaWaitMs, every time while
 * a master has too few), which must hold up neither the heartbeats and leases nor each other.
 */
export class RedisConnections {
  readonly name = 'redis';
  url: string;
  private embedded: EmbeddedRedis | undefined;
  redis!: RedisClient;
  sub!: RedisClient;
  funnelWait!: BlockingWait | WakeWait;
  outboxWait!: BlockingWait | WakeWait;
  /** Ingress's funnel writes (each followed by a WAIT with replica waits): `redis` without. */
  funnelWrites!: RedisClient;
  /** The commits (followed by a WAIT with replica waits): `redis` without. */
  commitWrites!: RedisClient;
  private readonly clients: RedisClient[] = [];

  constructor(
    private readonly config: Pick<
      Config,
      | 'redisUrl'
      | 'dataDir'
      | 'appendFsync'
      | 'redisCommandTimeoutMs'
      | 'redisReplicaWait'
      | 'redisReplicaWaitMs'
    >,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {
    this.url = config.redisUrl;
  }

  async start(): Promise<void> {
    const { config, log } = this;
    if (!this.url) {
      const dir = resolve(config.dataDir, 'redis');
      this.embedded = await startEmbeddedRedis({ dir, appendFsync: config.appendFsync });
      this.url = this.embedded.url;
      log.info(
        { redis: this.url, redisPid: this.embedded.pid, dir, appendFsync: config.appendFsync },
        'no THRESHOLD_REDIS_URL: started a local redis-server (append-only file on)',
      );
    }
    const options = {
      lazyConnect: true,
      maxRetriesPerRequest: 2,
      connectionName: `threshold:${this.nodeId}`,
    };
    const blocking = { ...options, maxRetriesPerRequest: null };
    const commands = { ...options, commandTimeout: config.redisCommandTimeoutMs };
    // A WAIT may take redisReplicaWaitMs on top of the write before it.
    // prettier-ignore
    const waiting = { ...options, commandTimeout: config.redisCommandTimeoutMs + config.redisReplicaWaitMs };
    const replicaWaits = config.redisReplicaWait > 0;
    const seeds = seedUrls(this.url);
    try {
      if (await isClusterNode(seeds)) {
        // A command whose master fails over is sent again once the replica took over.
        const cluster = (redisOptions: RedisOptions, extra: ClusterOptions = {}) =>
          this.add(
            new Cluster(seeds, {
              lazyConnect: true,
              redisOptions: { ...nodeAccess(seeds[0]!), ...redisOptions },
              ...CLUSTER_OPTIONS,
              ...extra,
            }),
            extra.shardedSubscribers ? 'wakes' : String(this.clients.length),
          );
        this.redis = defineScripts(cluster(commands));
        this.funnelWrites = replicaWaits ? defineScripts(cluster(waiting)) : this.redis;
        this.commitWrites = replicaWaits ? defineScripts(cluster(waiting)) : this.redis;
        this.sub = cluster(blocking);
        const wakes = cluster(blocking, { shardedSubscribers: true }) as Cluster;
        this.funnelWait = new WakeWait(wakes, this.redis);
        this.outboxWait = new WakeWait(wakes, this.redis);
        log.info({ redis: seeds }, 'Redis Cluster: found out from its nodes');
      } else {
        // A Redis that stops answering without closing the connection must fail commands, not hang them.
        this.redis = defineScripts(this.add(new Redis(this.url, commands), 'commands'));
        // prettier-ignore
        this.funnelWrites = replicaWaits ? defineScripts(this.add(new Redis(this.url, waiting), 'funnel-writes')) : this.redis;
        // prettier-ignore
        this.commitWrites = replicaWaits ? defineScripts(this.add(new Redis(this.url, waiting), 'commit-writes')) : this.redis;
        this.sub = this.add(new Redis(this.url, blocking), 'subscriber');
        this.funnelWait = new BlockingWait(
          this.add(new Redis(this.url, blocking), 'reader'),
          this.redis,
        );
        this.outboxWait = new BlockingWait(
          this.add(new Redis(this.url, blocking), 'outbox'),
          this.redis,
        );
      }
      await Promise.all(this.clients.map((c) => c.connect()));
    } catch (err) {
      await this.close();
      throw new UnavailableError(
        `cannot reach Redis at ${this.url} (${(err as Error).message}): is it running? check THRESHOLD_REDIS_URL`,
        { cause: err },
      );
    }
  }

  private add<C extends RedisClient>(client: C, name: string): C {
    client.on('error', (err: Error) =>
      this.log.warn({ err: err.message, connection: name }, 'Redis connection error (retrying)'),
    );
    this.clients.push(client);
    return client;
  }

  async stop(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.quit().catch(() => {})));
    await this.embedded?.stop();
  }

  /** Drops everything at once (a start that failed half-way). */
  async close(): Promise<void> {
    for (const c of this.clients) c.disconnect();
    await this.embedded?.stop();
  }
}

/**
 * What every node of a cluster needs from the first seed's URL: ioredis applies a seed URL's
 * password and TLS to that seed only, not to the nodes it finds from it.
 */
export function nodeAccess(url: string): RedisOptions {
  const { username, password, protocol } = new URL(url);
  return {
    ...(username ? { username: decodeURIComponent(username) } : {}),
    ...(password ? { password: decodeURIComponent(password) } : {}),
    ...(protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** Asks the seeds in turn whether they are nodes of a Redis Cluster (`cluster_enabled:1`). */
async function isClusterNode(seeds: string[]): Promise<boolean> {
  let lastError: unknown;
  for (const url of seeds) {
    const probe = new Redis(url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => {});
    try {
      await probe.connect();
      return /^cluster_enabled:1/m.test(await probe.info('cluster'));
    } catch (err) {
      lastError = err;
    } finally {
      probe.disconnect();
    }
  }
  throw lastError;
}
