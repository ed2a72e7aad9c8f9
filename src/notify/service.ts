import type { Config } from '../config.ts';
import { list } from '../config.ts';
import type { RunnerChannel } from '../delivery/channel.ts';
import type { MemberSettingsStore } from '../delivery/member-settings.ts';
import { waysOf } from '../delivery/missed.ts';
import type { Logger } from '../log.ts';
import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import { type Chain, NotificationDispatcher, type OnlineCheck } from './dispatcher.ts';
import { expand, type TagReader, validateTags } from './tag-expansion.ts';
import { parseTagExpression } from './tag-expression.ts';
import { Notifications } from './notifications.ts';

export interface NotificationServiceDeps {
  redis: RedisClient;
  keys: Keys;
  /** The outbox's channels, by name (push, webhook, sms, plug-ins). */
  channels: ReadonlyMap<string, RunnerChannel>;
  members: Pick<MemberSettingsStore, 'linksOf'>;
  leases: () => ReadonlyMap<number, string>;
  presence: OnlineCheck;
  tags: TagReader;
  notify(member: string, frame: string): Promise<void>;
  /** The number texts come from. */
  smsFrom: string;
  log: Logger;
}

/**
 * The notification side of a node (DESIGN §8): the store every node uses, and the dispatcher
 * of the partitions this node holds, which the outbox tells when a recipient's job is done.
 */
export function createNotificationService(
  config: Pick<Config, 'notifications' | 'tags' | 'http'>,
  deps: NotificationServiceDeps,
) {
  const notifications = new Notifications(deps.redis, deps.keys);
  const byPrefix = (prefix: string) =>
    prefix === 'phone' ? 'sms' : [...deps.channels.values()].find((c) => c.prefix === prefix)?.name;

  /**
   * How each member is reached out of band, in the order of `channels`: an app user by push,
   * their linked webhook, their linked phone; a phone or webhook member by its own channel.
   * One round trip for a page (the users' links).
   */
  async function chains(members: readonly string[], channels: readonly string[]) {
    const users = members.filter((m) => m.startsWith('user:'));
    const links = new Map((await deps.members.linksOf(users)).map((l, i) => [users[i], l]));
    return members.map((member): Chain => {
      const of = links.get(member);
      if (!of) {
        const ch = byPrefix(member.slice(0, member.indexOf(':')));
        return ch ? [[ch, member]] : [];
      }
      // Texts wait in the outbox for a node that can send them; push needs its channel here.
      return waysOf(member, channels, of).filter(([ch]) => ch !== 'push' || deps.channels.has(ch));
    });
  }

  const parse = (expression: string) =>
    parseTagExpression(expression, {
      field: 'to.tags',
      maxLength: config.tags.maxExpressionLength,
      maxTags: config.tags.maxExpressionTags,
    });
  const tags = {
    expand: (expression: string, pageSize: number) =>
      expand(parse(expression), deps.tags, { pageSize }),
    /** Parses and checks an expression at upload: a 400 naming where, or the unknown tag. */
    validate: (expression: string) => validateTags(parse(expression), deps.tags, 'to.tags'),
  };
  const { tickMs, pageSize, fallbackAfterMs } = config.notifications;
  const dispatcher = new NotificationDispatcher(
    { ...deps, notifications, chains, tags },
    { tickMs, pageSize, fallbackAfterMs, claimBatch: 20, smsFrom: deps.smsFrom },
  );
  return {
    name: 'notifications',
    notifications,
    dispatcher,
    tags,
    /** What the routes check a new notification against. */
    options: {
      maxBodyChars: config.http.maxBodyChars,
      maxMembers: config.notifications.maxMembers,
      maxScheduleDays: config.notifications.maxScheduleDays,
      channels: list(config.notifications.channels),
    },
    start: () => dispatcher.start(),
    stop: () => dispatcher.stop(),
  };
}
