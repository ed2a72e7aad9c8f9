import { resolve } from 'node:path';
import { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import { ConfigError, UnavailableError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type EmbeddedRedis, startEmbeddedRedis } from './embedded.ts';
import { defineScripts } from './scripts.ts';

/**
 * A node's Redis: its own `redis-server` under `dataDir` when no URL is set, and four
 * connections: commands (scripts defined, bounded by redisCommandTimeoutMs), and three for
 * blocking work that must not queue behind commands: the funnel reader, the pub/sub
 * subscriber and the outbox reader.
 */
export class RedisConnections {
  readonly name = 'redis';
  url: string;
  private embedded: EmbeddedRedis | undefined;
  redis!: Redis;
  reader!: Redis;
  sub!: Redis;
  outboxReader!: Redis;

  constructor(
    private readonly config: Pick<
      Config,
      'redisUrl' | 'dataDir' | 'appendFsync' | 'redisCommandTimeoutMs'
    >,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {
    this.url = config.redisUrl;
  }

  private get all(): Redis[] {
    return [this.redis, this.reader, this.sub, this.outboxReader].filter(Boolean);
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
    // A Redis that stops answering without closing the connection must fail commands, not hang them.
    this.redis = defineScripts(
      new Redis(this.url, { ...options, commandTimeout: config.redisCommandTimeoutMs }),
    );
    this.reader = new Redis(this.url, blocking);
    this.sub = new Redis(this.url, blocking);
    this.outboxReader = new Redis(this.url, blocking);
    const names = ['commands', 'reader', 'subscriber', 'outbox'];
    this.all.forEach((client, i) =>
      client.on('error', (err) =>
        log.warn({ err: err.message, connection: names[i] }, 'Redis connection error (retrying)'),
      ),
    );
    try {
      await Promise.all(this.all.map((c) => c.connect()));
    } catch (err) {
      await this.close();
      throw new UnavailableError(
        `cannot reach Redis at ${this.url} (${(err as Error).message}): is it running? check THRESHOLD_REDIS_URL`,
        { cause: err },
      );
    }
    // A cluster node answers most commands with MOVED: say so now, not with a stack trace.
    if (/^cluster_enabled:1/m.test(await this.redis.info('cluster'))) {
      await this.close();
      throw new ConfigError(
        'redisUrl',
        `${this.url} is a node of a Redis Cluster, which Threshold does not run on yet: point THRESHOLD_REDIS_URL at a standalone Redis (or leave it empty to start a local one)`,
      );
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.all.map((c) => c.quit().catch(() => {})));
    await this.embedded?.stop();
  }

  /** Drops everything at once (a start that failed half-way). */
  async close(): Promise<void> {
    for (const c of this.all) c.disconnect();
    await this.embedded?.stop();
  }
}
