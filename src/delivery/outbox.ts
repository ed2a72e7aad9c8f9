import type { RedisClient } from '../redis/client.ts';
import { type Config, isLoopback } from '../config.ts';
import type { Logger } from '../log.ts';
import { PartitionConsumer, type StreamWait } from '../mesh/partition-consumer.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';
import type { RunnerChannel } from './channel.ts';
import { createChannels, runnerDefaults } from './channels.ts';
import { type ChannelPlanner, DeliveryPlanner } from './delivery-plan.ts';
import {
  createHandlerChannel,
  type Handler,
  type HandlerMessage,
  HandlerPlanner,
} from './handlers.ts';
import type { MemberSettingsStore } from './member-settings.ts';
import { createMissedChannel, type MissedDeps, MissedPlanner } from './missed.ts';
import type { OutboxJob } from './outbox-job.ts';
import { SENDERS_GROUP } from './outbox-job.ts';
import { OutboxLedger } from './outbox-ledger.ts';
import { OutboxRunner } from './outbox-runner.ts';
import { DevSmsClient, type SmsClient, TwilioSmsClient } from './sms-client.ts';
import { PushSubscriptions, vapidKeys } from './push-subscriptions.ts';
import { SmsPlanner } from './sms-plan.ts';
import { WebhookEndpoints } from './webhook-endpoints.ts';

/**
 * Twilio with both credentials; without them, on loopback, development mode (texts are
 * logged and kept for GET /v1/dev/outbox); elsewhere none: nothing is sent, and the outbox
 * keeps every text until a node with credentials runs.
 */
export function smsClientFor(
  config: Pick<Config, 'twilio' | 'sms' | 'host'>,
  log: Logger,
): { client: SmsClient | undefined; dev: DevSmsClient | undefined; live: boolean } {
  const live = Boolean(config.twilio.accountSid && config.twilio.authToken);
  const dev = !live && isLoopback(config.host) ? new DevSmsClient(log) : undefined;
  const client = live
    ? new TwilioSmsClient({
        accountSid: config.twilio.accountSid,
        authToken: config.twilio.authToken,
        apiUrl: config.twilio.apiUrl,
        timeoutMs: config.sms.sendTimeoutMs,
      })
    : dev;
  return { client, dev, live };
}

export interface OutboxDeps {
  config: Config;
  nodeId: string;
  /** Commands connection. */
  redis: RedisClient;
  /** The outbox reader's wait for new jobs (a connection of its own). */
  wait: StreamWait;
  keys: Keys;
  members: MemberSettingsStore;
  metrics: Metrics;
  log: Logger;
  smsClient: SmsClient | undefined;
  /** partition → our lease value (the coordinator's `heldLeases()`). */
  leases: () => ReadonlyMap<number, string>;
  /** The configured handlers, run through the outbox, and how they reply. */
  handlers: ReadonlyMap<string, Handler>;
  reply: (handler: string, message: HandlerMessage, body: string) => Promise<void>;
  /** Who is online, for the room messages members miss while offline (missed.ts). */
  presence: MissedDeps['presence'];
  /** The number texts come from when a room has none. */
  smsFrom: string;
}

/** A fallback job (field `rcpt`) reached its final outcome: its side moves the recipient on. */
type Settled = (job: Readonly<OutboxJob>, outcome: string) => Promise<void>;

/**
 * The delivery side of a node (DESIGN §7): the channels, what they decide at commit (the
 * committer's planner), and the runner that sends the outbox jobs of the partitions we hold,
 * fed by a reader of those partitions' outboxes (added to the coordinator beside the funnel's).
 */
export async function createOutbox({ config, redis, keys, log, ...deps }: OutboxDeps) {
  const webhooks = new WebhookEndpoints(redis, keys);
  const push = {
    subscriptions: new PushSubscriptions(redis, keys, config.push.maxSubscriptionsPerMember),
    vapid: await vapidKeys(redis, keys, config.push),
  };
  const stopping = new AbortController();
  const channels: Map<string, RunnerChannel> = await createChannels(config.channels, {
    config,
    smsClient: deps.smsClient,
    members: deps.members,
    webhooks,
    push,
    metrics: deps.metrics,
    log,
    signal: stopping.signal,
  });
  // Texts are committed to the outbox even on a node that cannot send them (no Twilio).
  const routes = new Map([
    ['phone', 'sms'],
    ...[...channels.values()]
      .filter((c) => c.routed !== false)
      .map((c): [string, string] => [c.prefix, c.name]),
  ]);
  const memberPrefixes = ['user', ...routes.keys()];
  const planners: ChannelPlanner[] = [new SmsPlanner(redis, keys, deps.members)];
  if (deps.handlers.size > 0) {
    // Handlers ride the outbox as an internal channel, routed by a prefix no member has.
    channels.set(
      'handler',
      createHandlerChannel(deps.handlers, deps.reply, runnerDefaults(config.outbox)),
    );
    routes.set('handler', 'handler');
    planners.push(new HandlerPlanner(redis, keys));
  }
  // Room messages members miss while offline: an internal channel, like the handlers'.
  const missed = createMissedChannel(
    {
      redis,
      keys,
      members: deps.members,
      presence: deps.presence,
      smsFrom: deps.smsFrom,
      has: (ch) => channels.has(ch) || ch === 'sms',
    },
    runnerDefaults(config.outbox),
  );
  channels.set('missed', missed.channel);
  routes.set('missed', 'missed');
  planners.push(new MissedPlanner(redis, keys));
  const planner = new DeliveryPlanner(routes, planners);
  const blockMs = Math.min(config.mesh.readBlockMs, 500);
  const ledger = new OutboxLedger(
    redis,
    keys,
    {
      inFlightMs: (ch) => channels.get(ch)?.sendTimeoutMs ?? config.outbox.sendTimeoutMs,
      markerTtlMs: Math.round(config.rooms.dedupeTtlHours * 3_600_000),
      deadLength: 100_000,
    },
    log,
  );
  const runner = new OutboxRunner(
    channels,
    ledger,
    deps.metrics,
    deps.leases,
    { readBatch: config.outbox.readBatch, promoteMs: blockMs },
    log,
  );
  const reader = new PartitionConsumer(
    deps.wait,
    redis,
    keys,
    runner,
    {
      nodeId: deps.nodeId,
      batch: config.outbox.readBatch,
      blockMs,
      stream: (p) => keys.outbox(p),
      group: SENDERS_GROUP,
      // Pending jobs no lane holds (a channel this node lacked, a failure) are read again.
      rescanMs: 30_000,
    },
    log,
  );
  /** By job kind: relay (a missed room message's way), notification (set by its service). */
  const fallbacks: Record<string, Settled> = { relay: (job, end) => missed.settled(job, end) };
  runner.settled = async (job, end) => fallbacks[job.kind]?.(job, end);
  runner.rewind = (p) => reader.rewind(p);
  runner.resume = () => reader.resume?.();
  return {
    name: 'outbox',
    channels,
    /** Prefixes of the member ids a channel delivers to (room members may have these). */
    memberPrefixes,
    planner,
    webhooks,
    /** Members' push subscriptions and the VAPID key pair (the push routes). */
    push,
    runner,
    fallbacks,
    reader,
    start: () => reader.start(),
    /** Stops reading, waits (at most `waitMs`) for sends in flight, then stops the channels. */
    async stop(waitMs = 2000): Promise<void> {
      await reader.stop();
      await runner.stop(waitMs);
      // Only now: a send still in flight after waitMs is cut short (its next owner retries).
      stopping.abort();
      for (const c of channels.values()) await c.stop?.();
    },
  };
}
