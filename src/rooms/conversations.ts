import { ForbiddenError, NotFoundError, ValidationError } from '../errors.ts';
import { batch, type RedisClient } from '../redis/client.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';

/** Where a member is in one room: its seq, their read marker, and what they have not read. */
export interface RoomProgress {
  id: string;
  seq: number;
  readSeq: number;
  unread: number;
}

export interface LastMessage {
  seq: number;
  body: string;
  sender: unknown;
  ts: number;
}

export interface ConversationSummary extends RoomProgress {
  name: string;
  lastMessage: LastMessage | null;
}

export interface ConversationPage {
  rooms: ConversationSummary[];
  /** Goes into `after` for the next page; null on the last one. */
  next: string | null;
}

/**
 * A member's rooms seen as conversations: listed by latest activity, with read markers
 * (`thr:{p<n>}:room:<r>:reads`, member → seq) and unread counts. Nothing here is written per
 * member at commit (the commit script moves the sender's marker and the room's score in its
 * partition's activity index, `thr:{p<n>}:active`), so a room of 10,000 members commits as
 * fast as one of two. A list asks each partition the member has rooms in once
 * (room-progress-1.lua: activity, seq, marker), sorts, and reads names and newest messages
 * for the page's rooms only.
 */
export class Conversations {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** The member's rooms, most recent activity first, `limit` after the cursor `after`. */
  async list(member: string, limit: number, after?: string): Promise<ConversationPage> {
    const cursor = after === undefined ? undefined : parseCursor(after);
    const rooms = (await this.scan(member)).sort(
      (a, b) => b.at - a.at || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
    const start = cursor
      ? rooms.findIndex((r) => r.at < cursor.at || (r.at === cursor.at && r.id > cursor.id))
      : 0;
    const page = start < 0 ? [] : rooms.slice(start, start + limit);
    // Names and newest messages of this page's rooms only.
    const pipe = batch(this.redis);
    for (const { id } of page)
      pipe.hget(this.keys.room(id), 'name').xrevrange(this.keys.history(id), '+', '-', 'COUNT', 1);
    const replies = (await pipe.exec()) ?? [];
    const last = page.at(-1);
    const more = start >= 0 && start + limit < rooms.length;
    return {
      rooms: page.map(({ at: _, ...room }, i) => {
        const [name, newest] = [replies[2 * i], replies[2 * i + 1]].map((reply) => {
          if (reply?.[0]) throw reply[0];
          return reply?.[1];
        }) as [string | null, [string, string[]][]];
        return {
          ...room,
          name: name ?? room.id,
          lastMessage: newest[0] ? lastMessageOf(newest[0][1]) : null,
        };
      }),
      next: more && last ? `${last.at}~${last.id}` : null,
    };
  }

  /** Seq, read marker and unread count of each of the member's rooms (the `welcome` frame). */
  async progress(member: string): Promise<RoomProgress[]> {
    return (await this.scan(member))
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map(({ at: _, ...room }) => room);
  }

  /**
   * Every room of the member with its last activity, seq and marker: one room-progress script
   * per partition the member has rooms in (at most P calls, however many rooms). Rooms missing
   * from the activity index (created before it, or deleted meanwhile) are looked up alone.
   */
  private async scan(member: string): Promise<(RoomProgress & { at: number })[]> {
    const { keys } = this;
    const ids = await this.redis.smembers(keys.memberRooms(member));
    const byPartition = new Map<number, string[]>();
    for (const id of ids) {
      const p = keys.partitionOf(id);
      const group = byPartition.get(p);
      if (group) group.push(id);
      else byPartition.set(p, [id]);
    }
    const groups = [...byPartition];
    const replies = await Promise.all(
      groups.map(([p, rooms]) =>
        this.redis.roomProgress(keys.active(p), member, keys.roomPrefix(p), ...rooms),
      ),
    );
    const rooms: (RoomProgress & { at: number })[] = [];
    const unindexed: RoomProgress[] = [];
    groups.forEach(([, ids], g) => {
      const values = replies[g]!;
      ids.forEach((id, i) => {
        const [at, seq, read] = values.slice(3 * i, 3 * i + 3);
        const room = progress(id, String(seq ?? 0), String(read ?? 0));
        if (at == null) unindexed.push(room);
        else rooms.push({ ...room, at: Number(at) });
      });
    });
    if (unindexed.length > 0) {
      const created = await Promise.all(
        unindexed.map((r) => this.redis.hget(keys.room(r.id), 'createdAt')),
      );
      // A room without a hash is gone: left in the member's index by a delete that failed half-way.
      unindexed.forEach((r, i) => {
        if (created[i] != null) rooms.push({ ...r, at: Number(created[i]) });
      });
    }
    return rooms;
  }

  /**
   * Moves the member's marker in the room forward to `seq` (never past the room's seq, never
   * back) and tells the room's subscribers. Returns the marker as it now is.
   */
  async markRead(room: string, member: string, seq: number): Promise<number> {
    const { keys } = this;
    const [code, marker] = await this.redis.markRead(
      keys.reads(room),
      keys.seq(room),
      keys.members(room),
      member,
      seq,
      keys.live(room),
      room,
    );
    if (code === Code.NOT_MEMBER) {
      if (!(await this.redis.exists(keys.room(room))))
        throw new NotFoundError(`room ${room} does not exist`);
      throw new ForbiddenError(`${member} is not a member of room ${room}`);
    }
    return marker;
  }

  /** Every member's read marker in the room (members who never read are left out). */
  async reads(room: string): Promise<Record<string, number>> {
    const hash = await this.redis.hgetall(this.keys.reads(room));
    return Object.fromEntries(Object.entries(hash).map(([m, seq]) => [m, Number(seq)]));
  }
}

function progress(id: string, seq: string | null, read: string | null): RoomProgress {
  const s = Number(seq ?? 0);
  const readSeq = Math.min(s, Number(read ?? 0));
  return { id, seq: s, readSeq, unread: s - readSeq };
}

/** The newest history entry (`m`: the message frame) as the list shows it. */
function lastMessageOf(fields: string[]): LastMessage | null {
  const frame = fields[1];
  if (frame === undefined) return null;
  const { seq, body, sender, ts } = JSON.parse(frame) as LastMessage;
  return { seq, body, sender, ts };
}

function parseCursor(after: string): { at: number; id: string } {
  const match = /^(\d{1,16})~([a-z0-9][a-z0-9_-]{0,63})$/.exec(after);
  if (!match) throw new ValidationError('after: not a cursor this list gave (its next)', 'after');
  return { at: Number(match[1]), id: match[2]! };
}
