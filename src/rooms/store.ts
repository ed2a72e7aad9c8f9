import { batch, type RedisClient } from '../redis/client.ts';
import { z } from 'zod';
import { ConflictError, NotFoundError, ValidationError } from '../errors.ts';
import { E164 } from '../funnel/envelope.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import { revocationPayload } from './revocation.ts';

export const RoomSettings = z
  .object({
    /** Anyone may JOIN by SMS. */
    open: z.boolean().optional(),
    /** Senders get a confirmation receipt by default. */
    confirmations: z.boolean().optional(),
    /** Committed messages kept in the room's history (approximate, trimmed in blocks). */
    historyLength: z.number().int().min(1).max(100_000_000).optional(),
    /** Validators (config `validators`) every message to the room must pass, at ingress. */
    validators: z.array(z.string().min(1).max(32)).max(16).optional(),
    /** Handlers (config `handlers`) run on each committed message, on the room's owner. */
    handlers: z.array(z.string().min(1).max(32)).max(16).optional(),
    /**
     * Out-of-band deliveries (outbox jobs: texts, webhooks, pushes) of a message not made
     * within this many seconds of its commit are not made at all, and count as expired.
     */
    deliverWithinSeconds: z
      .number()
      .int()
      .min(1)
      .max(30 * 86_400)
      .optional(),
  })
  .strict();
export type RoomSettings = z.infer<typeof RoomSettings>;

export interface Room {
  id: string;
  name: string;
  numbers: string[];
  settings: RoomSettings;
  createdAt: number;
  /** Last committed sequence number (0 before the first message). */
  seq: number;
  members: number;
}

export interface NewRoom {
  id: string;
  name?: string | undefined;
  numbers?: string[] | undefined;
  settings?: RoomSettings | undefined;
}

/** Rooms and their members, as the admin API and ingress see them. */
export interface RoomsStore {
  create(room: NewRoom): Promise<Room>;
  get(id: string): Promise<Room | undefined>;
  list(): Promise<Room[]>;
  delete(id: string): Promise<void>;
  addMember(room: string, member: string): Promise<boolean>;
  removeMember(room: string, member: string): Promise<boolean>;
  members(room: string): Promise<string[]>;
  isMember(room: string, member: string): Promise<boolean>;
}

export class RedisRoomsStore implements RoomsStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /**
   * Steps of one slot each, in an order that is safe to repeat (a Redis Cluster has no
   * transaction across slots): claim the numbers, list the room, then write its hash in one
   * script. A create that failed half-way leaves no room, and trying again finishes it.
   */
  async create({ id, name, numbers: given = [], settings = {} }: NewRoom): Promise<Room> {
    const { keys } = this;
    const numbers = [...new Set(given)];
    for (const n of numbers)
      if (!E164.test(n)) throw new ValidationError(`number ${n} is not in E.164 form`, 'numbers');
    if (await this.redis.exists(keys.room(id)))
      throw new ConflictError(`room ${id} already exists`);
    const claimed = await this.claimNumbers(id, numbers);
    await this.redis.sadd(keys.rooms, id);
    const createdAt = Date.now();
    const fields: Record<string, string | number> = {
      createdAt,
      name: name ?? id,
      numbers: JSON.stringify(numbers),
      settings: JSON.stringify(settings),
    };
    if (settings.historyLength) fields.historyLength = settings.historyLength;
    // Read by the commit script, which gives every outbox job of a message its `exp`.
    if (settings.deliverWithinSeconds)
      fields.deliverWithinMs = settings.deliverWithinSeconds * 1000;
    // The handler planner's gate (commit-batch-n.lua, ARGV[6]).
    if (settings.handlers?.length) fields.handlers = JSON.stringify(settings.handlers);
    // prettier-ignore
    const created = await this.redis.createRoom(
      keys.room(id), keys.active(keys.partitionOf(id)), id, createdAt, ...Object.entries(fields).flat(),
    );
    if (created === Code.ALREADY) {
      // Created meanwhile by another call: the numbers this one claimed are not that room's.
      const theirs = (await this.get(id))?.numbers ?? [];
      await this.release(claimed.filter((n) => !theirs.includes(n)));
      throw new ConflictError(`room ${id} already exists`);
    }
    return { id, name: name ?? id, numbers, settings, createdAt, seq: 0, members: 0 };
  }

  /**
   * Claims each number for the room (one it already holds, from an earlier try, counts);
   * releases the new claims and refuses if another room has one. Returns the new claims.
   */
  private async claimNumbers(id: string, numbers: string[]): Promise<string[]> {
    const claims = await Promise.all(
      numbers.map(async (n) => {
        if (await this.redis.set(this.keys.number(n), id, 'NX')) return 'new';
        return (await this.redis.get(this.keys.number(n))) === id ? 'ours' : 'taken';
      }),
    );
    const claimed = numbers.filter((_, i) => claims[i] === 'new');
    const taken = numbers.filter((_, i) => claims[i] === 'taken');
    if (taken.length > 0) {
      await this.release(claimed);
      throw new ConflictError(`number ${taken.join(', ')} already serves another room`);
    }
    return claimed;
  }

  private async release(numbers: string[]): Promise<void> {
    await Promise.all(numbers.map((n) => this.redis.del(this.keys.number(n))));
  }

  async get(id: string): Promise<Room | undefined> {
    const [room] = await this.fetch([id]);
    return room;
  }

  async list(): Promise<Room[]> {
    const ids = (await this.redis.smembers(this.keys.rooms)).sort();
    return (await this.fetch(ids)).filter((r): r is Room => r !== undefined);
  }

  private async fetch(ids: string[]): Promise<(Room | undefined)[]> {
    if (ids.length === 0) return [];
    const pipe = batch(this.redis);
    for (const id of ids)
      pipe.hgetall(this.keys.room(id)).get(this.keys.seq(id)).scard(this.keys.members(id));
    const res = (await pipe.exec()) ?? [];
    return ids.map((id, i) => {
      const [hash, seq, members] = res.slice(i * 3, i * 3 + 3).map(([err, v]) => {
        if (err) throw err;
        return v;
      }) as [Record<string, string>, string | null, number];
      if (!hash.createdAt) return undefined;
      return {
        id,
        name: hash.name ?? id,
        numbers: JSON.parse(hash.numbers ?? '[]'),
        settings: JSON.parse(hash.settings ?? '{}'),
        createdAt: Number(hash.createdAt),
        seq: Number(seq ?? 0),
        members,
      };
    });
  }

  /**
   * Unlists the room and releases its members' index entries and numbers first, then
   * deletes its keys (one slot) last: a delete that failed half-way leaves a room that still
   * works, and trying again finishes it.
   */
  async delete(id: string): Promise<void> {
    const room = await this.get(id);
    if (!room) throw new NotFoundError(`room ${id} does not exist`);
    const { keys } = this;
    const members = await this.redis.smembers(keys.members(id));
    await Promise.all([
      ...members.map((m) => this.redis.srem(keys.memberRooms(m), id)),
      this.release(room.numbers),
      this.redis.srem(keys.rooms, id),
    ]);
    await this.redis
      .multi()
      // prettier-ignore
      .del(
        keys.room(id),
        keys.members(id),
        keys.seq(id),
        keys.history(id),
        keys.reads(id),
        keys.missed(id),
      )
      .zrem(keys.active(keys.partitionOf(id)), id)
      // In the same MULTI: every subscriber hears of the deletion before anything published later.
      .publish(keys.live(id), revocationPayload({ room: id, reason: 'deleted' }))
      .exec();
  }

  /** The room's set first, then the member's index of rooms (another slot): both run on a retry. */
  async addMember(room: string, member: string): Promise<boolean> {
    await this.mustExist(room);
    const [[, added]] = (await this.redis
      .multi()
      .sadd(this.keys.members(room), member)
      // The commit script's cached count of members outside the live path (it recounts).
      .hdel(this.keys.room(room), 'oob')
      .exec()) as [[Error | null, number], ...unknown[]];
    await this.redis.sadd(this.keys.memberRooms(member), room);
    // After the index: a `missed` setting changed meanwhile sees this room (missed.ts).
    if (await this.redis.hget(this.keys.member(member), 'missed'))
      await this.markMissed(room, member, true);
    // Sessions of the member that follow "mine" subscribe to the room (websocket-mine.ts).
    await this.redis.publish(
      this.keys.memberChannel(member),
      JSON.stringify({ type: 'joined', room }),
    );
    return added === 1;
  }

  async removeMember(room: string, member: string): Promise<boolean> {
    await this.mustExist(room);
    const [[, removed]] = (await this.redis
      .multi()
      .srem(this.keys.members(room), member)
      .hdel(this.keys.room(room), 'oob')
      .srem(this.keys.missed(room), member)
      // In the same MULTI: the member's sessions hear of it before any later message.
      .publish(this.keys.live(room), revocationPayload({ room, reason: 'removed', member }))
      .exec()) as [[Error | null, number], ...unknown[]];
    await this.redis.srem(this.keys.memberRooms(member), room);
    // The gate follows the set (a stale one only makes the planner read an empty set).
    await this.markMissed(room, member, false);
    return removed === 1;
  }

  /** Adds (if a member) or removes a member of the room's `missed` set, and sets its gate. */
  async markMissed(room: string, member: string, on: boolean): Promise<void> {
    const { keys } = this;
    // prettier-ignore
    await this.redis.markMissed(keys.room(room), keys.members(room), keys.missed(room), member, on ? '1' : '0');
  }

  async members(room: string): Promise<string[]> {
    await this.mustExist(room);
    return (await this.redis.smembers(this.keys.members(room))).sort();
  }

  async isMember(room: string, member: string): Promise<boolean> {
    return (await this.redis.sismember(this.keys.members(room), member)) === 1;
  }

  private async mustExist(room: string): Promise<void> {
    if (!(await this.redis.exists(this.keys.room(room))))
      throw new NotFoundError(`room ${room} does not exist`);
  }
}
