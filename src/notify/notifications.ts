import { ConflictError, NotFoundError } from '../errors.ts';
import { newUlid } from '../ids.ts';
import { isCluster, type RedisClient } from '../redis/client.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';

export const PRIORITIES = ['high', 'normal', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

export type NotificationStatus =
  'scheduled' | 'queued' | 'dispatching' | 'done' | 'cancelled' | 'expired';

/** Whom a notification goes to: any mix of members, rooms' members and a tag expression. */
export interface Audience {
  members?: string[] | undefined;
  rooms?: string[] | undefined;
  tags?: string | undefined;
}

export interface NewNotification {
  to: Audience;
  body: string;
  data?: unknown;
  priority: Priority;
  /** ms since epoch; now or earlier: queued for dispatch at once. */
  sendAt: number;
  /** ms since epoch; nothing is delivered after it. */
  expiresAt?: number | undefined;
  /** The fallback channels, in order, for members who are not reached live. */
  channels: string[];
  /** Who sent it: a service name (the admin, an API key's name). */
  sender: string;
}

/** What a dispatcher reads of a notification. */
export interface StoredNotification extends NewNotification {
  id: string;
  status: NotificationStatus;
}

const COUNTS = ['queued', 'sent', 'delivered', 'failed', 'expired'] as const;

/**
 * Notifications (DESIGN §5, §8) in Redis: each lives in the slot of its partition (by its
 * id), so its owner schedules and dispatches it under the partition's lease. This class is
 * what every node may do: create, read, cancel, re-prioritise, and move a recipient on.
 */
export class Notifications {
  private readonly wake: '0' | '1';

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly now: () => number = Date.now,
  ) {
    this.wake = isCluster(redis) ? '1' : '0';
  }

  partitionOf(id: string): number {
    return this.keys.partitionOf(`ntf:${id}`);
  }

  async create(n: NewNotification): Promise<{ id: string; status: NotificationStatus }> {
    const id = newUlid().toLowerCase();
    const p = this.partitionOf(id);
    const now = this.now();
    const status: NotificationStatus = n.sendAt > now ? 'scheduled' : 'queued';
    const fields: Record<string, string> = {
      status,
      priority: n.priority,
      body: n.body,
      to: JSON.stringify(n.to),
      channels: n.channels.join(','),
      sender: n.sender,
      sendAt: String(n.sendAt),
      createdAt: String(now),
      expansion: '0',
      ...Object.fromEntries(COUNTS.map((c) => [c, '0'])),
    };
    if (n.data !== undefined) fields.data = JSON.stringify(n.data);
    if (n.expiresAt !== undefined) fields.expiresAt = String(n.expiresAt);
    // One slot: the hash and its place in the due set are written together.
    await this.redis
      .multi()
      .hset(this.keys.notification(p, id), fields)
      .zadd(this.keys.notificationsDue(p, n.priority), n.sendAt, id)
      .exec();
    return { id, status };
  }

  async read(id: string): Promise<StoredNotification | undefined> {
    const hash = await this.redis.hgetall(this.keys.notification(this.partitionOf(id), id));
    if (!hash.status) return undefined;
    const data = hash.data === undefined ? undefined : (JSON.parse(hash.data) as unknown);
    return {
      id,
      status: hash.status as NotificationStatus,
      to: JSON.parse(hash.to ?? '{}') as Audience,
      body: hash.body ?? '',
      ...(data === undefined ? {} : { data }),
      priority: (hash.priority ?? 'normal') as Priority,
      sendAt: Number(hash.sendAt),
      expiresAt: hash.expiresAt === undefined ? undefined : Number(hash.expiresAt),
      channels: hash.channels ? hash.channels.split(',') : [],
      sender: hash.sender ?? '',
    };
  }

  /** The status route's answer: where it is, how many it reached, and how. */
  async status(id: string) {
    const hash = await this.redis.hgetall(this.keys.notification(this.partitionOf(id), id));
    if (!hash.status) throw new NotFoundError(`no notification ${id}`);
    const expansion = Number(hash.expansion ?? 0);
    const counts = Object.fromEntries(COUNTS.map((c) => [c, Number(hash[c] ?? 0)])) as Record<
      (typeof COUNTS)[number],
      number
    >;
    const percent = Object.fromEntries(
      COUNTS.map((c) => [c, expansion ? Math.round((counts[c] / expansion) * 1000) / 10 : 0]),
    );
    const time = (field: string) =>
      hash[field] === undefined ? null : new Date(Number(hash[field])).toISOString();
    return {
      id,
      status: hash.status as NotificationStatus,
      priority: hash.priority as Priority,
      sendAt: time('sendAt'),
      expiresAt: time('expiresAt'),
      createdAt: time('createdAt'),
      dispatchedAt: time('dispatchedAt'),
      expansion,
      counts,
      percent,
    };
  }

  /** Cancels it until its dispatch starts: 409 after. */
  async cancel(id: string): Promise<void> {
    await this.change(id, 'cancel');
  }

  /** Gives it a new priority: where it waits, and for the recipients not reached yet. */
  async prioritise(id: string, priority: Priority): Promise<void> {
    await this.change(id, priority);
  }

  /** A recipient's WebSocket answered `received`: delivered, and no fallback. */
  async received(id: string, member: string): Promise<boolean> {
    return (await this.advance(id, member, 'live', 'delivered')) === Code.OK;
  }

  /**
   * Moves a recipient on from `from` (live, or the channel whose job reported): to a final
   * state, or with `job` to the next channel of its fallback. STALE when it had moved.
   */
  async advance(
    id: string,
    member: string,
    from: string,
    to: string,
    job?: string[],
  ): Promise<number> {
    const p = this.partitionOf(id);
    // prettier-ignore
    return this.redis.advanceRecipient(
      this.keys.notification(p, id), this.keys.notificationRecipients(p, id),
      this.keys.notificationsWaiting(p), this.keys.outbox(p),
      id, member, from, to, this.wake, job ? JSON.stringify(job) : '',
    );
  }

  private async change(id: string, change: 'cancel' | Priority): Promise<void> {
    const p = this.partitionOf(id);
    const due = PRIORITIES.map((priority) => this.keys.notificationsDue(p, priority));
    const [code, status] = await this.redis.changeNotification(
      this.keys.notification(p, id),
      ...(due as [string, string, string]),
      change,
      id,
      this.now(),
    );
    if (code === Code.NONE) throw new NotFoundError(`no notification ${id}`);
    if (code === Code.CLOSED)
      throw new ConflictError(
        change === 'cancel'
          ? `notification ${id} is ${status}: it can be cancelled only until its dispatch starts`
          : `notification ${id} is ${status}: nothing is left to re-prioritise`,
        'too_late',
      );
  }
}
