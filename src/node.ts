import { readFileSync } from 'node:fs';
import { createAuthService, DEV_SMS_FROM } from './auth/service.ts';
import { type Config, isLoopback } from './config.ts';
import { createHandlers, HANDLER_SOURCE } from './delivery/handlers.ts';
import { LiveHub } from './delivery/live-hub.ts';
import { MemberNotices } from './delivery/member-notices.ts';
import { MemberSettingsStore } from './delivery/member-settings.ts';
import { MissedSettings } from './delivery/missed.ts';
import { createOutbox, smsClientFor } from './delivery/outbox.ts';
import { prepareOutbox } from './delivery/outbox-ledger.ts';
import { Presence } from './delivery/presence.ts';
import { Receipts } from './delivery/receipts.ts';
import { ConfigError } from './errors.ts';
import { prepareFunnel, RELAY_GROUP } from './funnel/funnel.ts';
import { FunnelMaintenance } from './funnel/maintenance.ts';
import { createApp } from './http/app.ts';
import { corsOrigins } from './http/cors.ts';
import { Auth } from './http/auth.ts';
import { PUBLIC_AUTH_PATHS } from './http/auth-routes.ts';
import { mountIdentity } from './http/identity-routes.ts';
import { mountPush, PUBLIC_PUSH_PATHS } from './http/push-routes.ts';
import { mountPresence } from './http/presence-routes.ts';
import { HttpServer } from './http/server.ts';
import { mountTwilio } from './http/twilio.ts';
import { operatorDeps } from './http/operator.ts';
import { mountWebhooks } from './http/webhooks.ts';
import { mountWebSocket, websocketOptions } from './http/websocket.ts';
import { defaultNodeId } from './ids.ts';
import { createIngress } from './ingress/create-ingress.ts';
import { hourlyLimiter } from './ingress/rate-limit.ts';
import { SmsInbound } from './ingress/sms-inbound.ts';
import { SourceRunner } from './ingress/source-runner.ts';
import { loadSources, publisherFor } from './ingress/sources.ts';
import { createLogger, type Logger } from './log.ts';
import { ClusterView } from './mesh/cluster-view.ts';
import { Coordinator } from './mesh/coordinator.ts';
import { Leases } from './mesh/leases.ts';
import { Membership, type MeshEvent } from './mesh/membership.ts';
import { PartitionConsumer } from './mesh/partition-consumer.ts';
import { Metrics } from './metrics/metrics.ts';
import { RedisConnections } from './redis/connections.ts';
import { Keys } from './redis/keys.ts';
import { Committer } from './rooms/committer.ts';
import { Conversations } from './rooms/conversations.ts';
import { conversationOptions } from './http/conversations.ts';
import { History } from './rooms/history.ts';
import { RedisRoomsStore } from './rooms/store.ts';
import { ServiceManager } from './services.ts';
import { warnAtStart } from './start-warnings.ts';
import { mountTags, TAG_UPLOAD_PATH } from './http/tag-routes.ts';
import { mountNotifications } from './http/notification-routes.ts';
import { mountMemberSettings } from './http/member-routes.ts';
import { createNotificationService } from './notify/service.ts';
import { TagStore } from './notify/tags.ts';

/** package.json's, so a release bumps it in one place. */
export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

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
  log: Logger = createLogger(config.logLevel, {}, config.logFormat),
): Promise<RelayNode> {
  const nodeId = config.nodeId || defaultNodeId(config.port);
  log = log.child({ node: nodeId });
  const devMode = !config.adminToken && !config.jwtSecret;
  if (devMode && !isLoopback(config.host)) {
    throw new ConfigError(
      'host',
      `no THRESHOLD_ADMIN_TOKEN or THRESHOLD_JWT_SECRET is set, and open development mode is only allowed on loopback, not on ${config.host}: set both secrets, or bind to 127.0.0.1`,
    );
  }

  const services = new ServiceManager(log);
  const conns = new RedisConnections(config, nodeId, log);
  await conns.start();
  services.adopt(conns);
  try {
    const { redis, sub } = conns;
    const keys = new Keys(config.keyPrefix, config.partitions);
    await prepareFunnel(redis, keys);
    await prepareOutbox(redis, keys);

    const metrics = new Metrics();
    metrics.redisReady = () => redis.status === 'ready';
    const receipts = new Receipts(nodeId, keys);
    const hub = new LiveHub(sub, keys, metrics, log);
    const history = new History(redis, keys);
    const rooms = new RedisRoomsStore(redis, keys);
    const members = new MemberSettingsStore(redis, keys);
    const { ingress, validators, replicaWait } = await createIngress(config, {
      nodeId,
      redis,
      funnelWrites: conns.funnelWrites,
      ...{ keys, receipts, rooms, metrics, log },
    });
    const handlers = await createHandlers(config.handlers, log);
    const sms = smsClientFor(config, log);
    const smsFrom = config.auth.smsFrom || (sms.dev ? DEV_SMS_FROM : '');
    const presenceOptions = { nodeId, nodeTtlMs: config.mesh.nodeTtlMs };
    const presence = new Presence(redis, keys, presenceOptions, metrics, log);
    let coordinator: Coordinator | undefined;
    const outbox = await createOutbox({
      config,
      nodeId,
      redis,
      wait: conns.outboxWait,
      keys,
      members,
      metrics,
      log,
      smsClient: sms.client,
      leases: () => coordinator?.heldLeases() ?? new Map(),
      handlers,
      ...{ presence, smsFrom },
      // A reply's id comes from the message: a handler run again replies once.
      reply: async (handler, message, body) => {
        await ingress.submit(
          {
            room: message.room,
            source: `${HANDLER_SOURCE}:${handler}`,
            sender: { kind: 'service', id: handler },
            kind: 'notification',
            body,
            id: `${handler}:reply:${message.id}`,
          },
          false,
        );
      },
    });
    const committer = new Committer(
      conns.commitWrites,
      keys,
      receipts,
      metrics,
      {
        historyLength: config.rooms.historyLength,
        dedupeTtlMs: Math.round(config.rooms.dedupeTtlHours * 3_600_000),
        maxAttempts: config.mesh.maxAttempts,
        deadLength: 100_000,
        replicaWait,
      },
      log,
      outbox.planner,
    );
    const consumer = new PartitionConsumer(
      conns.funnelWait,
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

    let http: HttpServer | undefined;
    let sources: SourceRunner | undefined;
    const notices = new MemberNotices(redis, keys);
    const accounts = createAuthService(config, { redis, keys, metrics, log, sms, rooms, notices });
    services.adopt(accounts);
    await accounts.start();
    const auth = new Auth({ adminToken: config.adminToken, devMode, ...accounts.tokens });
    const mesh = {
      get view() {
        return coordinator?.view ?? { live: [], owners: [] };
      },
      get ownedPartitions() {
        return coordinator?.ownedPartitions ?? [];
      },
    };
    const cluster = new ClusterView(redis, keys, nodeId, mesh, async () =>
      sources ? sources.holders() : {},
    );
    const limiterDeps = { redis, keys, metrics, log };
    const roomCreation = hourlyLimiter(limiterDeps, 'room_create', config.rooms.createPerHour);
    const conversations = new Conversations(redis, keys);
    const app = createApp({
      auth,
      cluster,
      rooms,
      ingress,
      history,
      ...{ metrics, log, operator: operatorDeps(redis, keys, config.mesh.leaseTtlMs) },
      version: VERSION,
      conversations: {
        rooms,
        conversations,
        ingress,
        creationLimit: (member) => roomCreation.take(member),
        options: conversationOptions(config, outbox.memberPrefixes),
      },
      health: {
        ready: () => coordinator?.ready ?? false,
        draining: () => http?.isDraining ?? false,
      },
      options: {
        maxBodyBytes: config.http.maxBodyBytes,
        maxBodyChars: config.http.maxBodyChars,
        memberPrefixes: outbox.memberPrefixes,
        publicPaths: [...PUBLIC_AUTH_PATHS, ...PUBLIC_PUSH_PATHS],
        largeBodies: [{ path: TAG_UPLOAD_PATH, maxBytes: config.tags.maxUploadBytes }],
        plugins: { validators: [...validators.keys()], handlers: [...handlers.keys()] },
        allowedOrigins: corsOrigins(config, devMode),
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
      { inbound, redis, keys, metrics, log, dev: sms.dev },
      {
        authToken: config.twilio.authToken,
        publicUrl: () => publicUrl,
        maxBodyBytes: config.http.maxBodyBytes,
      },
    );
    mountWebhooks(app, { endpoints: outbox.webhooks });
    mountIdentity(app, accounts);
    mountPush(app, outbox.push);
    const tagDeps = { memberPrefixes: outbox.memberPrefixes, options: config.tags };
    const tags = new TagStore(redis, keys);
    mountTags(app, { tags, ...tagDeps });
    const notifying = createNotificationService(config, {
      ...{ redis, keys, channels: outbox.channels, members, presence, tags, log },
      leases: () => coordinator?.heldLeases() ?? new Map(),
      notify: (member, frame) => notices.notify(member, frame),
      smsFrom,
    });
    outbox.fallbacks.notification = (job, end) => notifying.dispatcher.settled(job, end);
    mountMemberSettings(app, { missed: new MissedSettings(members, rooms) });
    mountNotifications(app, { ...notifying, links: members });
    mountPresence(app, { rooms, presence });
    const { notifications } = notifying;
    const reads = { markers: conversations, history, rooms };
    const sessionDeps = { hub, ...reads, ingress, metrics, log, presence, notifications };
    const ws = mountWebSocket(app, sessionDeps, websocketOptions(config));

    http = new HttpServer(
      app.fetch,
      ws,
      {
        host: config.host,
        port: config.port,
        graceMs: Math.min(2000, config.shutdownTimeoutMs / 4),
      },
      log,
    );
    // Bound before the mesh is joined: peers learn this node's URL from its heartbeat.
    await http.start();
    services.adopt(http);
    const port = http.port;
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
          presence.onLive(live);
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

    sources = new SourceRunner(
      redis,
      keys,
      await loadSources(config.sources, {
        http: { start() {}, stop: () => http?.drain() },
        websocket: { start() {}, stop: () => (ws.closeAll(), ws.stop()) },
        twilio: { start() {}, stop() {} },
      }),
      (key) => coordinator?.ownerOf(key),
      (name) => publisherFor(name, ingress),
      { nodeId, leaseTtlMs: config.mesh.leaseTtlMs, heartbeatMs: config.mesh.heartbeatMs },
      log,
    );

    await hub.listen(keys.nodeChannel(nodeId), (payload) => receipts.deliverPayload(payload));
    await accounts.listen(hub.listen.bind(hub), ws);
    await notices.listen(hub.listen.bind(hub), (m, frame) => ws.notifyMember(m, frame));
    await hub.listen(keys.meshChannel, (payload) => {
      const event = JSON.parse(payload) as MeshEvent;
      if (event.node !== nodeId) {
        coordinator?.poke();
        sources?.poke();
      }
    });
    await membership.assertNoTwin(config.mesh.heartbeatMs * 2 + 100);
    // Stopped in reverse: sources (ingress first), then the mesh lets go of its partitions
    // (sends in flight settled while the leases are ours), then the readers, the listener, Redis.
    services.add(
      { name: 'funnel', start: () => consumer.start(), stop: () => consumer.stop() },
      outbox,
      { name: 'mesh', start: () => coordinator?.start(), stop: () => coordinator?.stop() },
      // Stopped before the mesh: this node's presence is cleared while it is still live.
      presence,
      notifying,
      { name: 'maintenance', start: () => maintenance.start(), stop: () => maintenance.stop() },
      sources,
    );
    await services.start();

    const { host, publicUrl: configuredPublicUrl } = config;
    warnAtStart(log, { devMode, sms, host, configuredPublicUrl, publicUrl });
    log.info(
      { url, partitions: config.partitions, owned: coordinator.ownedPartitions.length },
      'relay node started',
    );

    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        log.info('stopping: no new ingress, finishing in-flight work, releasing leases');
        await services.stop(config.shutdownTimeoutMs);
        log.info('stopped');
      })());
    return { id: nodeId, url, listenUrl, redisUrl: conns.url, stop };
  } catch (err) {
    await services.stop(2000);
    throw err;
  }
}
