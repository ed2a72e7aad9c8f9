import { ForbiddenError } from '../errors.ts';
import type { RoomProgress } from '../rooms/conversations.ts';

/** What a member's session needs of the read markers. */
export interface ReadMarkers {
  /** Seq, marker and unread count of each of the member's rooms. */
  progress(member: string): Promise<RoomProgress[]>;
  markRead(room: string, member: string, seq: number): Promise<number>;
}

/** What a member's session needs of notifications: their `received` answers. */
export interface Receipts {
  received(id: string, member: string): Promise<boolean>;
}

/** What a member's session needs to hear of rooms the member joins. */
export interface MemberEvents {
  followMember(member: string, handler: (payload: string) => void): Promise<() => Promise<void>>;
}

/** The part of a session the member feed drives. */
export interface FeedSession {
  subscribe(room: string, since: number | undefined): Promise<void>;
  isSubscribed(room: string): boolean;
  /** A subscription that failed in the background: answered with an `error` frame. */
  failed(err: unknown, room: string): void;
}

/**
 * The first frame of a connection: the member's rooms with their unread counts. Read before
 * the upgrade completes, so it goes out before anything the client could ask for.
 */
export async function welcomeFrame(
  member: string | undefined,
  markers: ReadMarkers,
): Promise<string> {
  const rooms = member ? await markers.progress(member) : [];
  return JSON.stringify({ type: 'welcome', member: member ?? null, rooms });
}

/**
 * A WebSocket client as a member of conversations (DESIGN §5): the `welcome` frame with its
 * rooms' unread counts, `read` markers, and `{"type":"subscribe","rooms":"mine"}`, which
 * subscribes to every room of the member and to each room they join while connected (from
 * seq 0: a new room's first messages may be committed before the subscription is).
 */
export class MemberFeed {
  private unfollow: (() => Promise<void>) | undefined;
  private closed = false;

  constructor(
    private readonly member: string | undefined,
    private readonly deps: {
      markers: ReadMarkers;
      events: MemberEvents;
      notifications?: Receipts | undefined;
    },
    private readonly session: FeedSession,
  ) {}

  /** A member's own frames: a read marker, or a notification's `received`. */
  async handle(
    frame: { type: 'read'; room: string; seq: number } | { type: 'received'; id: string },
  ): Promise<void> {
    if (frame.type === 'read')
      return void (await this.deps.markers.markRead(
        frame.room,
        this.mustBeMember('a read marker'),
        frame.seq,
      ));
    // An answer for a notification that had moved on (or never was) changes nothing.
    await this.deps.notifications?.received(frame.id, this.mustBeMember('a received answer'));
  }

  async subscribeMine(): Promise<void> {
    const member = this.mustBeMember('rooms "mine"');
    if (!this.unfollow) {
      const unfollow = await this.deps.events.followMember(member, (payload) => {
        const room = joinedRoom(payload);
        if (room === undefined || this.session.isSubscribed(room)) return;
        this.session.subscribe(room, 0).catch((err: unknown) => this.session.failed(err, room));
      });
      if (this.closed) return void unfollow();
      this.unfollow = unfollow;
    }
    for (const { id } of await this.deps.markers.progress(member))
      if (!this.session.isSubscribed(id)) await this.session.subscribe(id, undefined);
  }

  close(): void {
    this.closed = true;
    void this.unfollow?.();
    this.unfollow = undefined;
  }

  private mustBeMember(what: string): string {
    if (this.member) return this.member;
    throw new ForbiddenError(`${what} belongs to a member: connect with a member's token`);
  }
}

/** The room of a `{"type":"joined","room"}` event on a member's channel. */
function joinedRoom(payload: string): string | undefined {
  try {
    const event = JSON.parse(payload) as { type?: unknown; room?: unknown };
    return event.type === 'joined' && typeof event.room === 'string' ? event.room : undefined;
  } catch {
    return undefined;
  }
}
