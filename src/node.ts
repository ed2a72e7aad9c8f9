import type { Server as HttpServer } from 'node:http';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { type ServerType, serve } from '@hono/node-server';
import { Redis } from 'ioredis';
import { type Config, isLoopback, list } from './config.ts';
import { newUlid } from './ids.ts';
import { LiveHub } from './delivery/live-hub.ts';
import { MemberSettingsStore } from './delivery/member-settings.ts';
import { createOutbox, smsClientFor } from './delivery/outbox.ts';
import { prepareOutbox } from './delivery/outbox-ledger.ts';
import { SMS_MAX_BODY_CHARS } from './delivery/sms-plan.ts';
import { type Receipt, Receipts } from './delivery/receipts.ts';
import { ConfigError, UnavailableError } from './errors.ts';
import { Funnel, prepareFunnel, RELAY_GROUP } from './funnel/funnel.ts';
import { FunnelMaintenance } from './funnel/maintenance.ts';
import { createApp } from './http/app.ts';
import { Auth } from './http/auth.ts';
import { answerClientError } from './http/problem.ts';
import { mountTwilio } from './http/twilio.ts';
import { mountWebhooks } from './http/webhooks.ts';
import { mountWebSocket } from './http/websocket.ts';
import { Ingress } from './ingress/ingress.ts';
import { PublishRateLimiter } from './ingress/rate-limit.ts';
import { SmsInbound } from './ingress/sms-inbound.ts';
import { createLogger, type Logger } from './log.ts';
import { ClusterView } from './mesh/cluster-view.ts';
import { Coordinator } from './mesh/coordinator.ts';
import { Leases } from './mesh/leases.ts';
import { Membership, type MeshEvent } from './mesh/membership.ts';
import { PartitionConsumer } from './mesh/partition-consumer.ts';
import { Metrics } from './metrics/metrics.ts';
import { type EmbeddedRedis, startEmbeddedRedis } from './redis/embedded.ts';
import { Keys } from './redis/keys.ts';
import { defineScripts } from './redis/scripts.ts';
import { Committer } from './rooms/committer.ts';
import { History } from './rooms/history.ts';
import { RedisRoomsStore } from './rooms/store.ts';

export const VERSION = '0.1.0';

export interface RelayNode {
  readonly id: string;
  /** The URL that reaches this node (handed to peers and clients): THRESHOLD_ADVERTISE_URL, else the address it listens on. */
  readonly url: string;
  /** The address it listens on, `http://<host>:<port>`. */
  readonly listenUrl: string;
  readonly redisUrl: string;
  /** Graceful stop (DESIGN §4): stop ingress, finish in-flight work, release leases, leave. */
  stop(): Promise<void>;
}

/** The composition root: builds every component from the config and starts the node. */
export async function startNode(
  config: Config,
  log: Logger = createLogger(config.logLevel),
): Promise<RelayNode> {
  // Stable across restarts (host and port), so a restarted node takes its own leases back at once.
  const nodeId =
    config.nodeId ||
    `${hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 40)}-${config.port || newUlid().slice(-8).toLowerCase()}`;
  log = log.child({ node: nodeId });
  const devMode = !config.adminToken && !config.jwtSecret;
  if (devMode && !isLoopback(config.host)) {
    throw new ConfigError(
      'host',
      `no THRESHOLD_ADMIN_TOKEN or THRESHOLD_JWT_SECRET is set, and open development mode is only allowed on loopback, not on ${config.host}: set both secrets, or bind to 127.0.0.1`,
    );
  }

  let embedded: EmbeddedRedis | undefined;
  let redisUrl = config.redisUrl;
  if (!redisUrl) {
    const dir = resolve(config.dataDir, 'redis');
    embedded = await startEmbeddedRedis({ dir, appendFsync: config.appendFsync });
    redisUrl = embedded.url;
    log.info(
      { redis: redisUrl, redisPid: embedded.pid, dir, appendFsync: config.appendFsync },
      'no THRESHOLD_REDIS_URL: started a local redis-server (append-only file on)',
    );
  }

  const redisOptions = {
    lazyConnect: true,
    maxRetriesPerRequest: 2,
    connectionName: `threshold:${nodeId}`,
  };
  // A Redis that stops answering without closing the connection must fail commands, not hang them.
  const redis = defineScripts(
    new Redis(redisUrl, { ...redisOptions, commandTimeout: config.redisCommandTimeoutMs }),
  );
  const reader = new Redis(redisUrl, { ...redisOptions, maxRetriesPerRequest: null });
  const sub = new Redis(redisUrl, { ...redisOptions, maxRetriesPerRequest: null });
  const outboxReader = new Redis(redisUrl, { ...redisOptions, maxRetriesPerRequest: null });
  for (const [name, client] of [
    ['commands', redis],
    ['reader', reader],
    ['subscriber', sub],
    ['outbox', outboxReader],
  ] as const) {
    client.on('error', (err) =>
      log.warn({ err: err.message, connection: name }, 'Redis connection error (retrying)'),
    );
  }
  let listening: ServerType | undefined;
  const closeAll = async () => {
    listening?.close();
    for (const c of [redis, reader, sub, outboxReader]) c.disconnect();
    await embedded?.stop();
  };

  try {
    const connecting = [redis, reader, sub, outboxReader].map((c) => c.connect());
    await Promise.all(connecting).catch((err: Error) => {
      throw new UnavailableError(
        `cannot reach Redis at ${redisUrl} (${err.message}): is it running? check THRESHOLD_REDIS_URL`,
        { cause: err },
      );
    });
    const keys = new Keys(config.keyPrefix, config.partitions);
    await prepareFunnel(redis, keys);
    await prepareOutbox(redis, keys);

    const metrics = new Metrics();
    const receipts = new Receipts(nodeId, keys);
    const hub = new LiveHub(sub, keys, metrics, log);
    const history = new History(redis, keys);
    const rooms = new RedisRoomsStore(redis, keys);
    const members = new MemberSettingsStore(redis, keys);
    const funnel = new Funnel(redis, keys, {
      maxLength: config.mesh.maxFunnelLength,
      maxSmsBodyChars: SMS_MAX_BODY_CHARS,
    });
    const ingress = new Ingress(
      funnel,
      receipts,
      metrics,
      { nodeId, receiptTimeoutMs: config.http.waitTimeoutMs },
      new PublishRateLimiter(
        redis,
        keys,
        metrics,
        { perSecond: config.rateLimit.publishPerSecond, burst: config.rateLimit.publishBurst },
        log,
      ),
    );
    const sms = smsClientFor(config, log);
    let coordinator: Coordinator | undefined;
    const outbox = await createOutbox({
      config,
      nodeId,
      redis,
      reader: outboxReader,
      keys,
      members,
      metrics,
      log,
      smsClient: sms.client,
      leases: () => coordinator?.heldLeases() ?? new Map(),
    });
    const committer = new Committer(
      redis,
      keys,
      receipts,
      metrics,
      {
        historyLength: config.rooms.historyLength,
        dedupeTtlMs: Math.round(config.rooms.dedupeTtlHours * 3_600_000),
        maxAttempts: config.mesh.maxAttempts,
        deadLength: 100_000,
      },
      log,
      outbox.planner,
    );
    const consumer = new PartitionConsumer(
      reader,
      redis,
      keys,
      committer,
      {
        nodeId,
        batch: config.mesh.readBatch,
        blockMs: config.mesh.readBlockMs,
        stream: (p) => keys.funnel(p),
        group: RELAY_GROUP,
      },
      log,
    );

    let draining = false;
    const auth = new Auth({ adminToken: config.adminToken, jwtSecret: config.jwtSecret, devMode });
    const cluster = new ClusterView(redis, keys, nodeId, {
      get view() {
        return coordinator?.view ?? { live: [], owners: [] };
      },
      get ownedPartitions() {
        return coordinator?.ownedPartitions ?? [];
      },
    });
    const app = createApp({
      auth,
      cluster,
      rooms,
      ingress,
      history,
      metrics,
      log,
      health: { ready: () => coordinator?.ready ?? false, draining: () => draining },
      options: {
        maxBodyBytes: config.http.maxBodyBytes,
        maxBodyChars: config.http.maxBodyChars,
        memberPrefixes: ['user', ...outbox.routes.keys()],
      },
    });
    const inbound = new SmsInbound(
      redis,
      keys,
      rooms,
      members,
      ingress,
      metrics,
      { dedupeTtlMs: Math.round(config.rooms.dedupeTtlHours * 3_600_000) },
      log,
    );
    let publicUrl = '';
    mountTwilio(
      app,
      {
        inbound,
        redis,
        keys,
        metrics,
        log,
        dev: sms.dev,
      },
      {
        authToken: config.twilio.authToken,
        publicUrl: () => publicUrl,
        maxBodyBytes: config.http.maxBodyBytes,
      },
    );
    mountWebhooks(app, { endpoints: outbox.webhooks });
    const sessionDeps = { hub, history, rooms, ingress, metrics, log };
    const ws = mountWebSocket(app, sessionDeps, {
      maxFrameBytes: config.ws.maxFrameBytes,
      heartbeatMs: config.ws.heartbeatMs,
      maxBufferedBytes: config.ws.maxBufferedBytes,
      replayPageSize: config.ws.replayPageSize,
      maxBodyChars: config.http.maxBodyChars,
      framesPerSecond: config.ws.framesPerSecond,
      frameBurst: config.ws.frameBurst,
      maxDroppedFrames: config.ws.maxDroppedFrames,
      allowedOrigins: list(config.ws.allowedOrigins),
      maxConnectionsPerIp: config.ws.maxConnectionsPerIp,
      maxConnectionsPerMember: config.ws.maxConnectionsPerMember,
    });

    const server = await listen(app.fetch, config.host, config.port);
    listening = server;
    ws.inject(server);
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const listenUrl = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    // This node's own address, for peers and for clients sent here by /v1/connect; the public
    // URL (Twilio's view, often a load balancer in front of every node) is another matter.
    const url = config.advertiseUrl || listenUrl;
    publicUrl = config.publicUrl || url;
    if (!config.advertiseUrl && (config.host === '0.0.0.0' || config.host === '::')) {
      log.warn(
        { url },
        'no THRESHOLD_ADVERTISE_URL: /v1/cluster and /v1/connect hand out this address, which clients cannot reach; set THRESHOLD_ADVERTISE_URL to the URL that reaches this node',
      );
    }

    const membership = new Membership(redis, keys, {
      nodeId,
      nodeTtlMs: config.mesh.nodeTtlMs,
      info: { url, startedAt: Date.now(), version: VERSION },
    });
    const leases = new Leases(redis, keys, nodeId, config.mesh.leaseTtlMs);
    coordinator = new Coordinator(
      membership,
      leases,
      [consumer, outbox.reader],
      {
        nodeId,
        partitions: config.partitions,
        heartbeatMs: config.mesh.heartbeatMs,
        leaseTtlMs: config.mesh.leaseTtlMs,
      },
      {
        connections: () => ws.connections,
        onRebalance: () => metrics.rebalances.inc(),
        onHandoff: ({ seconds, acquired, released }) => {
          metrics.handoffSeconds.observe(seconds);
          metrics.partitionsMoved.inc({ direction: 'acquired' }, acquired);
          metrics.partitionsMoved.inc({ direction: 'released' }, released);
        },
        onTick: ({ live, owned }) => {
          metrics.nodesLive.set(live.length);
          metrics.partitionsOwned.set(owned);
        },
        // A graceful handoff: sends in flight are settled while the lease is still ours.
        beforeRelease: (p) => outbox.runner.release(p),
      },
      log,
    );
    const maintenance = new FunnelMaintenance(
      redis,
      keys,
      metrics,
      () => coordinator?.ownedPartitions ?? [],
      config.mesh.trimIntervalMs,
      log,
    );

    await hub.listen(keys.nodeChannel(nodeId), (payload) =>
      receipts.deliver(JSON.parse(payload) as Receipt),
    );
    await hub.listen(keys.meshChannel, (payload) => {
      const event = JSON.parse(payload) as MeshEvent;
      if (event.node !== nodeId) coordinator?.poke();
    });
    await membership.assertNoTwin(config.mesh.heartbeatMs * 2 + 100);
    await consumer.start();
    await outbox.reader.start();
    await coordinator.start();
    maintenance.start();

    if (devMode)
      log.warn(
        'open development mode: no THRESHOLD_ADMIN_TOKEN or THRESHOLD_JWT_SECRET, every request is trusted (loopback only)',
      );
    if (!sms.live && sms.dev)
      log.warn(
        'SMS development mode: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, so texts are logged, not sent; POST /v1/dev/sms simulates a phone, GET /v1/dev/outbox lists the texts',
      );
    else if (!sms.live)
      log.error(
        { host: config.host },
        'SMS is not sending: no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN. Texts stay queued in the outbox (nothing is lost) until a node starts with both set',
      );
    else if (!config.publicUrl)
      log.warn(
        { url: publicUrl },
        "no THRESHOLD_PUBLIC_URL: Twilio webhook signatures are checked against this node's own address, which fails behind a proxy",
      );
    log.info(
      { url, partitions: config.partitions, owned: coordinator.ownedPartitions.length },
      'relay node started',
    );

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info('stopping: no new ingress, finishing in-flight work, releasing leases');
        draining = true;
        ws.closeAll();
        ws.stop();
        const closed = new Promise<void>((r) => server.close(() => r()));
        // A peer that never completes the close handshake, or a request that hangs, must not
        // hold the partitions hostage: after a grace period their connections are cut.
        const grace = Math.min(2000, config.shutdownTimeoutMs / 4);
        const timer = setTimeout(() => {
          log.warn('connections still open after the grace period; closing them');
          ws.terminateAll();
          (server as HttpServer).closeAllConnections?.();
        }, grace);
        await closed;
        clearTimeout(timer);
        maintenance.stop();
        // Before the leases go: sends in flight are settled while they are still ours.
        await outbox.stop(Math.min(2000, config.shutdownTimeoutMs / 4));
        await coordinator?.stop();
        await consumer.stop();
        await Promise.all([redis, reader, sub, outboxReader].map((c) => c.quit().catch(() => {})));
        await embedded?.stop();
        log.info('stopped');
      })());
    return { id: nodeId, url, listenUrl, redisUrl, stop };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function listen(
  fetch: (req: Request) => Response | Promise<Response>,
  hostname: string,
  port: number,
): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname, port }, () => resolve(server));
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new ConfigError(
              'port',
              `port ${port} is in use on ${hostname}: stop what uses it or pass --port`,
            )
          : err,
      ),
    );
    server.on('clientError', answerClientError);
  });
}
