import { isCluster, type RedisClient } from '../redis/client.ts';
import type { Logger } from '../log.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import type { Notifications, StoredNotification } from './notifications.ts';
import { PRIORITIES } from './notifications.ts';

/** Dispatching ids and due waiting entries a partition's tick takes up, each (the rest: next tick). */
const LISTED_PER_TICK = 100;

/** What the dispatcher asks of presence: which of these members have a live WebSocket. */
export interface OnlineCheck {
  online(members: string[]): Promise<boolean[]>;
}

/** Expands a tag expression in pages of member ids (each id once), in bounded memory. */
export interface TagExpander {
  expand(expression: string, pageSize: number): AsyncIterable<string[]>;
}

/** How a member is reached besides a WebSocket: channel and the id it delivers to, in order. */
export type Chain = [channel: string, to: string][];

export interface DispatcherDeps {
  redis: RedisClient;
  keys: Keys;
  notifications: Notifications;
  /** partition → our lease value (the coordinator's). */
  leases: () => ReadonlyMap<number, string>;
  presence: OnlineCheck;
  tags: TagExpander;
  /**
   * The ways to reach a member out of band, in the order of `channels` (the notification's
   * fallback list): an app user's push, linked webhook and phone; a phone or webhook member's
   * own channel.
   */
  chains(members: readonly string[], channels: readonly string[]): Promise<Chain[]>;
  /** Sends a frame to the member's WebSockets on every node. */
  notify(member: string, frame: string): Promise<void>;
  log: Logger;
}

export interface DispatcherOptions {
  tickMs: number;
  pageSize: number;
  /** How long a live recipient has to answer `received` before the fallback. */
  fallbackAfterMs: number;
  /** Notifications claimed per partition per tick. */
  claimBatch: number;
  /** The number texts come from (the sms channel's `from`). */
  smsFrom: string;
}

/**
 * Dispatches the notifications of the partitions this node holds (DESIGN §8): every tick it
 * claims the due ones (fenced, high priority first), expands each audience page by page
 * (members, rooms' members, a tag expression), reaches each recipient once (live, or the
 * first channel of their fallback), moves live recipients who did not answer in time on to
 * their fallback, and resumes dispatches a former owner left half-way (recipients are
 * recorded once, so a page done twice adds nobody twice).
 */
export class NotificationDispatcher {
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  private readonly active = new Set<string>();
  private readonly wake: '0' | '1';

  constructor(
    private readonly deps: DispatcherDeps,
    private readonly options: DispatcherOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.wake = isCluster(deps.redis) ? '1' : '0';
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.options.tickMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** One round over the partitions we hold; overlapping rounds are skipped. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      await Promise.all(
        [...this.deps.leases()].map(([p, lease]) =>
          this.partition(p, lease).catch((err: unknown) =>
            this.deps.log.warn({ err, partition: p }, 'notification dispatch round failed'),
          ),
        ),
      );
    } finally {
      this.ticking = false;
    }
  }

  /**
   * An outbox job of a notification reached its end (the runner's final outcome): the
   * recipient is done, or moves on to the next channel of their fallback.
   */
  async settled(job: Readonly<Record<string, string | undefined>>, outcome: string) {
    const { msg: id, rcpt: member, ch } = job;
    if (!id || !member || !ch) return;
    if (outcome === 'sent' || outcome === 'delivered' || outcome === 'expired')
      return void (await this.deps.notifications.advance(id, member, ch, outcome));
    const n = await this.deps.notifications.read(id);
    const [chain = []] = n ? await this.deps.chains([member], n.channels) : [];
    const at = chain.findIndex(([c]) => c === ch);
    await this.moveOn(n, id, member, ch, at < 0 ? [] : chain.slice(at + 1));
  }

  private async partition(p: number, lease: string): Promise<void> {
    const { keys, redis } = this.deps;
    const now = this.now();
    // prettier-ignore
    const reply = await redis.claimNotifications(
      keys.lease(p), ...(PRIORITIES.map((pr) => keys.notificationsDue(p, pr)) as [string, string, string]),
      keys.notificationsDispatching(p), keys.notificationsWaiting(p), lease, now,
      this.options.claimBatch, keys.notificationPrefix(p), LISTED_PER_TICK,
    );
    if (reply === Code.FENCED) return;
    // Claimed now, or left half-way by a former owner (or by us before a failure).
    const [claimed, dispatching, waiting] = reply;
    const ids = [...claimed, ...dispatching.filter((id) => !claimed.includes(id))];
    for (const id of ids) {
      if (this.active.has(id)) continue;
      this.active.add(id);
      try {
        await this.dispatch(p, lease, id);
      } finally {
        this.active.delete(id);
      }
    }
    for (const entry of waiting) {
      const [id = '', member = ''] = entry.split(' ');
      const n = await this.deps.notifications.read(id);
      const [chain = []] = n ? await this.deps.chains([member], n.channels) : [];
      await this.moveOn(n, id, member, 'live', chain);
    }
  }

  private async dispatch(p: number, lease: string, id: string): Promise<void> {
    const { keys, redis, notifications } = this.deps;
    const n = await notifications.read(id);
    if (!n) return void (await redis.zrem(keys.notificationsDispatching(p), id));
    const expired = n.expiresAt !== undefined && this.now() >= n.expiresAt;
    const frame = JSON.stringify({
      type: 'notification',
      id,
      body: n.body,
      ...(n.data === undefined ? {} : { data: n.data }),
      priority: n.priority,
      sender: n.sender,
      ts: n.sendAt,
    });
    const common = jobFields(n, this.options.smsFrom);
    for await (const page of this.audience(n)) {
      const online = expired ? [] : await this.deps.presence.online(page);
      const offline = page.filter((m, i) => !expired && !(m.startsWith('user:') && online[i]));
      const ways = new Map(
        (await this.deps.chains(offline, n.channels)).map((chain, i) => [offline[i], chain[0]]),
      );
      const args: string[] = [];
      for (const member of page) {
        const way = ways.has(member) ? (ways.get(member) ?? ['failed', '']) : undefined;
        const [state, to] = expired ? ['expired', ''] : (way ?? ['live', '']);
        args.push(member, state, to);
      }
      const fallbackAt =
        n.channels.length > 0 ? String(this.now() + this.options.fallbackAfterMs) : '';
      // prettier-ignore
      const live = await redis.dispatchRecipients(
        keys.lease(p), keys.notification(p, id), keys.notificationRecipients(p, id),
        keys.notificationsWaiting(p), keys.outbox(p),
        lease, id, fallbackAt, page[page.length - 1] ?? '', this.wake, JSON.stringify(common), ...args,
      );
      if (live === Code.FENCED) return; // the partition's new owner resumes it
      for (const member of live) await this.deps.notify(member, frame);
    }
    await redis
      .multi()
      .hset(keys.notification(p, id), 'status', expired ? 'expired' : 'done')
      .zrem(keys.notificationsDispatching(p), id)
      .exec();
  }

  /** Every recipient, page by page: members as given, then rooms' members, then the tags. */
  private async *audience(n: StoredNotification): AsyncGenerator<string[]> {
    const size = this.options.pageSize;
    const members = n.to.members ?? [];
    for (let i = 0; i < members.length; i += size) yield members.slice(i, i + size);
    for (const room of n.to.rooms ?? []) {
      let cursor = '0';
      do {
        const [next, page] = await this.deps.redis.sscan(
          this.deps.keys.members(room),
          cursor,
          'COUNT',
          size,
        );
        cursor = next;
        if (page.length > 0) yield page;
      } while (cursor !== '0');
    }
    if (n.to.tags) yield* this.deps.tags.expand(n.to.tags, size);
  }

  /** A recipient not reached through `from`: the next way in `rest`, or done for good. */
  private async moveOn(
    n: StoredNotification | undefined,
    id: string,
    member: string,
    from: string,
    rest: Chain,
  ): Promise<void> {
    const { notifications } = this.deps;
    if (!n) return;
    if (n.expiresAt !== undefined && this.now() >= n.expiresAt)
      return void (await notifications.advance(id, member, from, 'expired'));
    const next = rest[0];
    // A live recipient with nowhere else to go was handed the frame: sent, not confirmed.
    if (!next)
      return void (await notifications.advance(
        id,
        member,
        from,
        from === 'live' ? 'sent' : 'failed',
      ));
    const [ch, to] = next;
    const job = [
      'ch',
      ch,
      'to',
      to,
      'rcpt',
      member,
      'd',
      `ntf~${member}~${id}~${ch}`,
      ...jobFields(n, this.options.smsFrom),
    ];
    await notifications.advance(id, member, from, ch, job);
  }
}

/** The outbox job fields of a notification that every recipient's job has. */
function jobFields(n: StoredNotification, from: string): string[] {
  const data = n.data === undefined ? {} : { data: n.data };
  const sender = { kind: 'service', id: n.sender };
  const message = {
    id: n.id,
    seq: 0,
    body: n.body,
    sender,
    kind: 'notification',
    ts: n.sendAt,
    ...data,
  };
  return [
    ...['kind', 'notification', 'msg', n.id, 'room', '', 'attempt', '0', 'pri', n.priority],
    ...['exp', n.expiresAt === undefined ? '' : String(n.expiresAt), 'body', n.body, 'from', from],
    ...['m', JSON.stringify(message)],
  ];
}
