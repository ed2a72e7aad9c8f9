import type { RedisClient } from '../redis/client.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';
import { parseRevocation, REVOCATION_PREFIX, type RevokeReason } from '../rooms/revocation.ts';

/** A local receiver of a room's committed messages (a WebSocket session). */
export interface LiveSubscriber {
  /**
   * `frame` is the message exactly as clients get it (UTF-8 JSON text), the bytes Redis
   * delivered: serialised once by the committer, never decoded or re-encoded per subscriber.
   */
  deliver(room: string, seq: number, frame: Buffer): void;
  /** Pub/sub was interrupted: whatever was published meanwhile must be read from history. */
  resync(room: string): void;
  /**
   * The room was taken from `member` (or, with no member, deleted): a subscriber of that
   * member tells its client and drops the room, before any later message of it arrives.
   */
  revoke(room: string, member: string | undefined, reason: RevokeReason): void;
  /** Any other frame on the room's channel (a member's `read` marker), as clients get it. */
  notice(room: string, frame: Buffer): void;
}

const SEQ = /"seq":(\d+)/;
const TS = /"ts":(\d+)\}$/;
/** Bytes of a frame that hold its seq: `{"type":"message","room":<≤ 66>,"seq":<≤ 16>`. */
const HEAD_BYTES = 128;
/** Bytes at the end of a frame that hold its ts: `"ts":<13 digits>}`. */
const TAIL_BYTES = 32;

/**
 * Fans committed messages out to this node's sessions: one Redis subscription per room
 * that has local subscribers, shared by all of them (DESIGN §4, `thr:live:<r>`).
 */
export class LiveHub {
  private readonly rooms = new Map<string, Set<LiveSubscriber>>();
  private readonly channels = new Map<
    string,
    { handlers: Set<(payload: string) => void>; subscribed: Promise<unknown> }
  >();
  /** Rooms whose SUBSCRIBE Redis has not confirmed yet. */
  private readonly confirmed = new Map<string, Promise<void>>();
  private readonly prefix: string;
  /** Set when the connection was up before: the next 'ready' is a reconnect. */
  private hadConnection: boolean;

  constructor(
    private readonly sub: RedisClient,
    private readonly keys: Keys,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.prefix = keys.live('');
    // The node connects before building the hub, so the first 'ready' may be behind us.
    this.hadConnection = sub.status === 'ready';
    // Buffers, not strings: a frame goes to every local session as the bytes Redis sent.
    sub.on('messageBuffer', (channel: Buffer, payload: Buffer) =>
      this.onMessage(channel.toString(), payload),
    );
    sub.on('ready', () => {
      // ioredis re-subscribes by itself; what was published while we were away is not replayed.
      if (this.hadConnection) this.resyncAll();
      this.hadConnection = true;
    });
  }

  /**
   * Calls `handler` with what is published on a non-room channel (receipts, membership, a
   * member's events) until the returned function is called. Resolves once Redis confirmed
   * the subscription; handlers of one channel share it.
   */
  async listen(channel: string, handler: (payload: string) => void): Promise<() => Promise<void>> {
    let entry = this.channels.get(channel);
    if (!entry) {
      const subscribed = this.sub.subscribe(channel);
      entry = { handlers: new Set(), subscribed };
      this.channels.set(channel, entry);
      const failed = entry;
      // A failed subscription is not kept: the next listen() tries again.
      subscribed.catch(() => {
        if (this.channels.get(channel) === failed) this.channels.delete(channel);
      });
    }
    const listening = entry;
    listening.handlers.add(handler);
    await listening.subscribed;
    return async () => {
      if (!listening.handlers.delete(handler) || listening.handlers.size > 0) return;
      if (this.channels.get(channel) !== listening) return;
      this.channels.delete(channel);
      await this.sub
        .unsubscribe(channel)
        .catch((err) => this.log.warn({ err, channel }, 'unsubscribe failed'));
    };
  }

  /** A member's channel (`joined` events), as listen(). */
  followMember(member: string, handler: (payload: string) => void): Promise<() => Promise<void>> {
    return this.listen(this.keys.memberChannel(member), handler);
  }

  /** Resolves once Redis confirmed the subscription, so nothing published after it is missed. */
  async subscribe(room: string, subscriber: LiveSubscriber): Promise<void> {
    const set = this.rooms.get(room);
    if (set) {
      set.add(subscriber);
      // A second subscriber must wait for the same confirmation as the first one.
      await this.confirmed.get(room);
      return;
    }
    this.rooms.set(room, new Set([subscriber]));
    const confirmed = this.sub.subscribe(this.keys.live(room)).then(() => undefined);
    this.confirmed.set(room, confirmed);
    try {
      await confirmed;
    } finally {
      if (this.confirmed.get(room) === confirmed) this.confirmed.delete(room);
    }
  }

  async unsubscribe(room: string, subscriber: LiveSubscriber): Promise<void> {
    const set = this.rooms.get(room);
    if (!set?.delete(subscriber) || set.size > 0) return;
    this.rooms.delete(room);
    await this.sub
      .unsubscribe(this.keys.live(room))
      .catch((err) => this.log.warn({ err, room }, 'unsubscribe failed'));
  }

  get subscribedRooms(): number {
    return this.rooms.size;
  }

  private onMessage(channel: string, payload: Buffer): void {
    if (channel.startsWith(this.prefix)) {
      const room = channel.slice(this.prefix.length);
      const set = this.rooms.get(room);
      if (!set) return;
      if (isRevocation(payload)) {
        const revocation = parseRevocation(payload.toString());
        if (!revocation) {
          this.log.warn({ room }, 'unreadable control frame on a live channel; ignored');
          return;
        }
        // A copy: subscribers leave the set as they drop the room.
        for (const s of [...set]) s.revoke(room, revocation.member, revocation.reason);
        return;
      }
      if (!isMessage(payload)) {
        for (const s of set) s.notice(room, payload);
        return;
      }
      const seq = Number(SEQ.exec(payload.toString('latin1', 0, HEAD_BYTES))?.[1]);
      for (const s of set) s.deliver(room, seq, payload);
      // Once per message and node, not per subscriber: fan-out stays cheap.
      this.metrics.deliveries.inc({ channel: 'ws', outcome: 'sent' }, set.size);
      const ts = Number(TS.exec(payload.toString('latin1', payload.length - TAIL_BYTES))?.[1]);
      if (ts)
        this.metrics.ingressToDelivery.observe(
          { channel: 'ws' },
          Math.max(0, Date.now() - ts) / 1000,
        );
      return;
    }
    const handlers = this.channels.get(channel)?.handlers;
    if (!handlers) return;
    const text = payload.toString();
    for (const h of handlers) h(text);
  }

  private resyncAll(): void {
    this.log.info(
      { rooms: this.rooms.size },
      'pub/sub reconnected; sessions catch up from history',
    );
    for (const [room, set] of this.rooms) for (const s of set) s.resync(room);
  }
}

const REVOCATION_HEAD = Buffer.from(REVOCATION_PREFIX, 'latin1');
const MESSAGE_HEAD = Buffer.from('{"type":"message"', 'latin1');

function isMessage(payload: Buffer): boolean {
  return payload.subarray(0, MESSAGE_HEAD.length).equals(MESSAGE_HEAD);
}

function isRevocation(payload: Buffer): boolean {
  return payload.subarray(0, REVOCATION_HEAD.length).equals(REVOCATION_HEAD);
}
