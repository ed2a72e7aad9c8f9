import type { ChannelSetting, Config } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { loadPlugin } from '../plugins.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { ChannelContext, ChannelFactory, DeliveryChannel, RunnerChannel } from './channel.ts';
import { createPushChannel } from './channels/push.ts';
import { createSmsChannel } from './channels/sms.ts';
import { createWebhookChannel } from './channels/webhook.ts';
import type { MemberSettingsStore } from './member-settings.ts';
import type { PushSubscriptions, VapidKeys } from './push-subscriptions.ts';
import { retryPolicy } from './retry-policy.ts';
import type { SmsClient } from './sms-client.ts';
import type { WebhookEndpoints } from './webhook-endpoints.ts';

export interface ChannelDeps {
  config: Pick<Config, 'sms' | 'outbox' | 'webhooks' | 'push' | 'publicUrl' | 'rooms'>;
  /** Twilio, or development mode's logger; undefined: no SMS channel on this node (texts wait). */
  smsClient: SmsClient | undefined;
  members: MemberSettingsStore;
  webhooks: WebhookEndpoints;
  push: { subscriptions: PushSubscriptions; vapid: VapidKeys };
  metrics: Metrics;
  log: Logger;
  signal: AbortSignal;
}

/** How the runner schedules a channel with no settings of its own (plug-ins, webhooks, handlers). */
export function runnerDefaults(
  outbox: Config['outbox'],
): Pick<RunnerChannel, 'maxInFlight' | 'maxQueuedPerLane' | 'sendTimeoutMs' | 'retry'> {
  return {
    maxInFlight: outbox.maxInFlight,
    maxQueuedPerLane: outbox.maxQueuedPerLane,
    sendTimeoutMs: outbox.sendTimeoutMs,
    retry: retryPolicy(outbox),
  };
}

/** The built-ins every node has, unless the config file names a channel of the same name. */
const DEFAULTS: ChannelSetting[] = [
  { name: 'sms', module: 'sms', options: {} },
  { name: 'webhook', module: 'webhook', options: {} },
  { name: 'push', module: 'push', options: {} },
];

/**
 * The one factory of delivery channels (DESIGN §7): the built-ins and the config's
 * `channels`, each a built-in name, a package or a file whose default export is a
 * `createChannel(ctx)`. Fails with a ConfigError naming the channel that cannot be built.
 */
export async function createChannels(
  settings: readonly ChannelSetting[],
  deps: ChannelDeps,
): Promise<Map<string, RunnerChannel>> {
  const all = [...DEFAULTS.filter((d) => !settings.some((s) => s.name === d.name)), ...settings];
  const channels = new Map<string, RunnerChannel>();
  const prefixes = new Map<string, string>();
  for (const setting of all) {
    const channel = await createChannel(setting, deps);
    if (!channel) continue;
    channels.set(setting.name, channel);
    if (channel.routed === false) continue;
    const owner = prefixes.get(channel.prefix);
    if (owner)
      throw new ConfigError(
        `channels.${setting.name}`,
        `channel ${setting.name} wants the member-id prefix "${channel.prefix}:", which channel ${owner} has`,
      );
    prefixes.set(channel.prefix, setting.name);
  }
  return channels;
}

async function createChannel(
  setting: ChannelSetting,
  deps: ChannelDeps,
): Promise<RunnerChannel | undefined> {
  const { config } = deps;
  const { outbox } = config;
  const defaults = { name: setting.name, ...runnerDefaults(outbox) };
  const ctx: ChannelContext = {
    name: setting.name,
    options: setting.options,
    log: deps.log.child({ channel: setting.name }),
    signal: deps.signal,
  };
  switch (setting.module) {
    case 'sms': {
      if (!deps.smsClient) return undefined;
      const { sms } = config;
      const channel = createSmsChannel(
        { client: deps.smsClient, members: deps.members, metrics: deps.metrics },
        {
          ratePerSecond: sms.ratePerSecond,
          burst: sms.burst,
          maxInFlight: sms.maxInFlight,
          maxQueuedPerNumber: sms.maxQueuedPerNumber,
          sendTimeoutMs: sms.sendTimeoutMs,
          // Status callbacks only to a URL Twilio can reach: THRESHOLD_PUBLIC_URL, never the
          // listen address it would fall back to.
          publicUrl: config.publicUrl,
          retry: retryPolicy(sms),
        },
      );
      return { ...channel, name: setting.name };
    }
    case 'webhook': {
      const timeoutMs = config.webhooks.timeoutMs;
      const channel = createWebhookChannel(ctx, { endpoints: deps.webhooks, timeoutMs });
      return { ...defaults, sendTimeoutMs: timeoutMs, ...plain(channel, channel.prefix) };
    }
    case 'push': {
      const { subject, ttlSeconds, timeoutMs } = config.push;
      const channel = createPushChannel(ctx, { ...deps.push, subject, ttlSeconds, timeoutMs });
      // Jobs name it; `user:` members stay on the live path at commit.
      return { ...defaults, sendTimeoutMs: timeoutMs, routed: false, ...channel };
    }
    default: {
      const { channel, prefix } = await load(setting, ctx);
      return { ...defaults, ...plain(channel, prefix) };
    }
  }
}

/** A plug-in module's channel, checked: its default export must build `{ prefix, send }`. */
async function load(
  setting: ChannelSetting,
  ctx: ChannelContext,
): Promise<{ channel: DeliveryChannel; prefix: string }> {
  const where = `channels.${setting.name}`;
  const { factory } = await loadPlugin<ChannelFactory>('channels', setting);
  const channel = (await factory(ctx)) as Partial<DeliveryChannel> | undefined;
  const prefix = typeof channel?.prefix === 'string' ? channel.prefix.replace(/:$/, '') : '';
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(prefix) || typeof channel?.send !== 'function')
    throw new ConfigError(
      where,
      `channel module ${setting.module}: createChannel(ctx) must return { prefix, send(job) } with a prefix of a-z 0-9 - (like "pager")`,
    );
  if (RESERVED.includes(prefix))
    throw new ConfigError(
      where,
      `the prefix "${prefix}:" is taken (user: is the live WebSocket path, handler: runs handlers, missed: hands on what members miss): choose another`,
    );
  return { channel: channel as DeliveryChannel, prefix };
}

/** Member-id prefixes no plug-in channel may claim. */
const RESERVED = ['user', 'handler', 'missed'];

/** A plug-in's channel as the runner sees it (its own methods bound to it). */
function plain(
  channel: DeliveryChannel,
  prefix: string,
): Pick<RunnerChannel, 'prefix' | 'send' | 'stop'> {
  const out: Pick<RunnerChannel, 'prefix' | 'send' | 'stop'> = {
    prefix,
    send: (job) => channel.send(job),
  };
  if (channel.stop) out.stop = () => channel.stop?.();
  return out;
}
