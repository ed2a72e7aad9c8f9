import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Every Threshold series (DESIGN §6), on a registry of its own. */
export class Metrics {
  readonly registry = new Registry();

  readonly ingress = new Counter({
    name: 'threshold_ingress_total',
    help: 'Envelopes accepted into the funnel, by source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly ingressRejected = new Counter({
    name: 'threshold_ingress_rejected_total',
    help: 'Publish attempts refused at ingress, by source and reason (forbidden, not_found, invalid, unavailable)',
    labelNames: ['source', 'reason'] as const,
    registers: [this.registry],
  });
  readonly relayed = new Counter({
    name: 'threshold_messages_relayed_total',
    help: 'Messages committed to room history and fanned out, by source',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });
  readonly duplicates = new Counter({
    name: 'threshold_messages_duplicate_total',
    help: 'Funnel entries whose envelope was already committed (client retries, redelivery after a crash)',
    registers: [this.registry],
  });
  readonly commitsUnreplicated = new Counter({
    name: 'threshold_commits_unreplicated_total',
    help: 'Commits whose receipt was withheld because fewer than redisReplicaWait replicas acknowledged them within redisReplicaWaitMs',
    registers: [this.registry],
  });
  readonly discarded = new Counter({
    name: 'threshold_messages_discarded_total',
    help: 'Messages not relayed, by reason; dead-lettered ones are in the thr:dead stream',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly deliveries = new Counter({
    name: 'threshold_deliveries_total',
    help: 'Deliveries to recipients, by channel and outcome',
    labelNames: ['channel', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly ingressToCommit = new Histogram({
    name: 'threshold_ingress_to_commit_seconds',
    help: 'Time from ingress (receivedAt) to commit',
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly ingressToDelivery = new Histogram({
    name: 'threshold_ingress_to_delivery_seconds',
    help: 'Time from ingress (receivedAt) to the message being handed to the channel on this node (WebSocket: written to local subscribers)',
    labelNames: ['channel'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly commitBatch = new Histogram({
    name: 'threshold_commit_batch_size',
    help: 'Funnel entries committed per pipelined batch',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000],
    registers: [this.registry],
  });
  readonly funnelLag = new Gauge({
    name: 'threshold_funnel_lag',
    help: 'Entries in an owned funnel partition not yet read by its owner',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly funnelPending = new Gauge({
    name: 'threshold_funnel_pending',
    help: 'Entries of an owned funnel partition read but not yet acknowledged',
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly partitionsOwned = new Gauge({
    name: 'threshold_partitions_owned',
    help: 'Funnel partitions this node holds the lease of',
    registers: [this.registry],
  });
  readonly nodesLive = new Gauge({
    name: 'threshold_nodes_live',
    help: 'Relay nodes in the live set, as this node sees it',
    registers: [this.registry],
  });
  readonly rebalances = new Counter({
    name: 'threshold_rebalances_total',
    help: 'Ring changes this node reacted to',
    registers: [this.registry],
  });
  readonly handoffSeconds = new Histogram({
    name: 'threshold_handoff_seconds',
    help: 'Time from seeing a ring change to holding exactly the partitions the new ring gives this node',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30],
    registers: [this.registry],
  });
  readonly partitionsMoved = new Counter({
    name: 'threshold_partitions_moved_total',
    help: 'Partition leases this node took (acquired) or gave up (released) on ring changes',
    labelNames: ['direction'] as const,
    registers: [this.registry],
  });
  readonly wsConnections = new Gauge({
    name: 'threshold_websocket_connections',
    help: 'Open WebSocket connections on this node',
    registers: [this.registry],
  });
  readonly presenceMembers = new Gauge({
    name: 'threshold_presence_members',
    help: 'Members (user:…) with at least one open WebSocket on this node',
    registers: [this.registry],
  });
  readonly wsClosed = new Counter({
    name: 'threshold_websocket_closed_total',
    help: 'WebSocket connections closed by the server, by reason (slow_consumer, heartbeat, shutdown, rate_limited, revoked)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly wsRefused = new Counter({
    name: 'threshold_websocket_refused_total',
    help: 'WebSocket upgrades refused before the handshake, by reason (origin: not in ws.allowedOrigins; ip_limit, member_limit: over ws.maxConnectionsPerIp / ws.maxConnectionsPerMember)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'threshold_rate_limited_total',
    help: 'Requests refused by a rate limit, by limit (publish: rateLimit.publishPerSecond per member over every node; ws_frame: ws.framesPerSecond per connection, frames dropped; room_create: rooms.createPerHour per member; auth_start, auth_start_total: auth.startsPerAddressPerHour per address, auth.startsPerHour in all; invite: invites.perHour per member)',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  readonly authCodesSent = new Counter({
    name: 'threshold_auth_codes_sent_total',
    help: 'Sign-in codes texted (POST /v1/auth/phone/start)',
    registers: [this.registry],
  });
  readonly authRefused = new Counter({
    name: 'threshold_auth_refused_total',
    help: 'Sign-in requests refused, by reason (address_limit, hourly_limit, phone_limit, country, invalid_phone, wrong_code, attempts)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly rateLimiterErrors = new Counter({
    name: 'threshold_rate_limiter_errors_total',
    help: 'Publishes let through unchecked because the shared rate limiter script failed (not an outage: that is a 503): the limit fails open',
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'threshold_dead_letters_total',
    help: 'Envelopes moved to thr:dead, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly smsInbound = new Counter({
    name: 'threshold_sms_inbound_total',
    help: 'Texts Twilio delivered to /twilio/sms (or the dev route), by outcome (relayed, keyword, opt_out (a STOP word), duplicate, not_member, unknown_number, too_long, bad_signature, unavailable, error)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly outboxJobs = new Counter({
    name: 'threshold_outbox_jobs_total',
    help: 'Outbox send attempts, by channel, outcome (sent, delivered, retried, failed, dead, skipped, postponed, reconciled, fenced_after_send) and error code ("" when sent; for SMS the Twilio code, or unreached, ambiguous, error without an answer)',
    labelNames: ['channel', 'outcome', 'code'] as const,
    registers: [this.registry],
  });
  readonly outboxAmbiguous = new Counter({
    name: 'threshold_outbox_ambiguous_total',
    help: 'Deliveries sent again after an attempt whose outcome was unknown (a timeout, or an owner that died or paused mid-send): the recipient may have got them twice',
    labelNames: ['channel'] as const,
    registers: [this.registry],
  });
  readonly smsSent = new Counter({
    name: 'threshold_sms_sent_total',
    help: 'Texts Twilio accepted, by sending number (rate() gives the per-number send rate)',
    labelNames: ['number'] as const,
    registers: [this.registry],
  });
  readonly smsStatus = new Counter({
    name: 'threshold_sms_status_total',
    help: "Twilio status callbacks, by status and whether they moved the recipient's state (moved; unchanged: in that state already; stale: behind it)",
    labelNames: ['status', 'result'] as const,
    registers: [this.registry],
  });
  readonly outboxDepth = new Gauge({
    name: 'threshold_outbox_depth',
    help: "Jobs in an owned partition's outbox, including those waiting for a retry",
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });
  readonly outboxOldest = new Gauge({
    name: 'threshold_outbox_oldest_seconds',
    help: "Age of the oldest job in an owned partition's outbox stream",
    labelNames: ['partition'] as const,
    registers: [this.registry],
  });

  /**
   * Whether the node's command connection to Redis is up, read at each scrape; the
   * composition root points it at the connection. Until then, up.
   */
  redisReady: () => boolean = () => true;
  readonly redisConnected: Gauge = new Gauge({
    name: 'threshold_redis_connected',
    help: "1 while this node's command connection to Redis is ready, 0 while it is cut off and reconnecting",
    registers: [this.registry],
    collect: (): void => this.redisConnected.set(this.redisReady() ? 1 : 0),
  });

  constructor(labels: Record<string, string> = {}) {
    this.registry.setDefaultLabels(labels);
    collectDefaultMetrics({ register: this.registry });
  }
}
