import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { LiveSubscriber } from '../delivery/live-hub.ts';
import { assertMayRead } from '../rooms/access.ts';
import type { HistoryPage } from '../rooms/history.ts';
import type { RevokeReason } from '../rooms/revocation.ts';
import type { Room } from '../rooms/store.ts';
import {
  CLOSE,
  type ClientFrame,
  describeFrameError,
  errorFrame,
  errorFrameFor,
  parseClientFrame,
  type PublishFrame,
} from './websocket-frames.ts';
import { FrameRate, type FrameRateOptions } from './frame-rate.ts';
import { type MessageIngress, publishFrame } from './websocket-publish.ts';
import {
  MemberFeed,
  type MemberEvents,
  type ReadMarkers,
  type Receipts,
} from './websocket-mine.ts';
import type { SocketLike } from './corked-socket.ts';

export interface Principal {
  /** The member id the client acts as (`user:alice`); undefined for the admin token. */
  member?: string | undefined;
  /** Admin token or open development mode: may read any room. */
  admin: boolean;
}

/** What the session needs of the live hub: a room's committed messages, while it listens. */
export interface LiveFeed {
  /** Resolves once nothing published afterwards can be missed. */
  subscribe(room: string, subscriber: LiveSubscriber): Promise<void>;
  unsubscribe(room: string, subscriber: LiveSubscriber): Promise<void>;
}

/** What the session needs of history: the catch-up after `since`, and where the room is. */
export interface HistorySource {
  since(room: string, since: number, limit: number): Promise<HistoryPage>;
  lastSeq(room: string): Promise<number>;
}

/** What the session needs of the rooms: who may read one (see assertMayRead). */
export interface RoomAccess {
  get(id: string): Promise<Room | undefined>;
  isMember(room: string, member: string): Promise<boolean>;
}

export interface SessionDeps {
  hub: LiveFeed & MemberEvents;
  /** Read markers and unread counts (the `welcome` and `read` frames). */
  markers: ReadMarkers;
  /** Notifications: a `received` answer stops the recipient's fallback. */
  notifications?: Receipts | undefined;
  history: HistorySource;
  rooms: RoomAccess;
  ingress: MessageIngress;
  metrics: Metrics;
  log: Logger;
}

export interface SessionOptions extends FrameRateOptions {
  maxBufferedBytes: number;
  replayPageSize: number;
  maxBodyChars: number;
}

interface RoomSub {
  /** Seq of the last message sent to the client for this room. */
  last: number;
  /** Catching up from history: live messages wait in `pending` meanwhile. */
  syncing: boolean;
  pending: { seq: number; frame: string | Buffer }[];
}

let nextConn = 0;

/**
 * One WebSocket client: its subscriptions, each in seq order with no gaps (history first,
 * then live, healing from history whenever a gap shows), its publishes and their acks.
 */
export class WebSocketSession implements LiveSubscriber {
  readonly id = `c${(++nextConn).toString(36)}-${process.pid.toString(36)}`;
  private readonly subs = new Map<string, RoomSub>();
  private closed = false;
  private readonly rate: FrameRate;
  private readonly feed: MemberFeed;

  constructor(
    private readonly socket: SocketLike,
    private readonly principal: Principal,
    private readonly deps: SessionDeps,
    private readonly options: SessionOptions,
  ) {
    this.rate = new FrameRate(options);
    this.feed = new MemberFeed(
      principal.member,
      { markers: deps.markers, events: deps.hub, notifications: deps.notifications },
      {
        subscribe: (room, since) => this.subscribe(room, since),
        isSubscribed: (room) => this.subs.has(room),
        failed: (err, room) => this.answer(err, undefined, room),
      },
    );
  }

  /** Sends the `welcome` frame (websocket-mine.ts welcomeFrame), before anything else. */
  start(welcome: string): void {
    this.send(welcome);
  }

  async onText(text: string): Promise<void> {
    if (!this.admit()) return;
    let frame: ClientFrame;
    try {
      frame = parseClientFrame(text);
    } catch (err) {
      this.error('bad_frame', describeFrameError(err));
      return;
    }
    try {
      switch (frame.type) {
        case 'ping':
          this.send('{"type":"pong"}');
          return;
        case 'subscribe':
          if (frame.room === undefined) await this.feed.subscribeMine();
          else await this.subscribe(frame.room, frame.since);
          return;
        case 'read':
        case 'received':
          await this.feed.handle(frame);
          return;
        case 'unsubscribe':
          await this.unsubscribe(frame.room);
          return;
        case 'publish':
          await this.publish(frame);
          return;
      }
    } catch (err) {
      this.answer(
        err,
        frame.type === 'publish' ? frame.id : undefined,
        'room' in frame ? frame.room : undefined,
      );
    }
  }

  /** The `error` frame for a request that failed. */
  private answer(err: unknown, id?: string, room?: string): void {
    const frame = errorFrameFor(err, id, room);
    if (frame !== undefined) return this.send(frame);
    this.deps.log.error({ err, conn: this.id }, 'WebSocket frame failed');
    this.error('internal', 'the request failed on the server; retry', id);
  }

  /** Whether to read a frame, under the connection's frame rate (see FrameRate). */
  private admit(): boolean {
    if (this.closed) return false;
    const verdict = this.rate.next();
    if (verdict.action === 'read') return true;
    this.deps.metrics.rateLimited.inc({ limit: 'ws_frame' });
    if (verdict.action === 'close') {
      this.closeFor(
        'rate_limited',
        CLOSE.POLICY_VIOLATION,
        'too many frames over the rate limit',
        'closed a WebSocket client that kept sending over its frame rate',
      );
    } else if (verdict.tell) {
      this.error(
        'rate_limited',
        `over ${this.options.framesPerSecond} frames per second: frames are dropped until the rate falls`,
        undefined,
        undefined,
        { retryAfterMs: verdict.retryAfterMs },
      );
    }
    return false;
  }

  private async subscribe(room: string, since: number | undefined): Promise<void> {
    const { rooms, hub, history } = this.deps;
    await assertMayRead(rooms, room, this.principal);
    if (this.subs.has(room)) await this.unsubscribe(room, false);
    const sub: RoomSub = { last: 0, syncing: true, pending: [] };
    this.subs.set(room, sub);
    let current: number;
    try {
      // Subscribe first, then read the seq: everything committed after the read arrives live.
      await hub.subscribe(room, this);
      current = await history.lastSeq(room);
      // Checked again once pub/sub is confirmed: a removal (or deletion) that came before this
      // read fails it, and one that comes after reaches this session as a revocation.
      await assertMayRead(rooms, room, this.principal);
    } catch (err) {
      if (this.subs.get(room) === sub) await this.unsubscribe(room, false);
      throw err;
    }
    if (this.subs.get(room) !== sub || this.closed) return;
    this.send(JSON.stringify({ type: 'subscribed', room, seq: current }));
    sub.last = since === undefined ? current : Math.min(since, current);
    await this.catchUp(room, sub);
  }

  private async unsubscribe(room: string, confirm = true): Promise<void> {
    if (!this.subs.delete(room)) {
      if (confirm) this.error('not_subscribed', `not subscribed to room ${room}`, undefined, room);
      return;
    }
    await this.deps.hub.unsubscribe(room, this);
    if (confirm) this.send(JSON.stringify({ type: 'unsubscribed', room }));
  }

  private publish(frame: PublishFrame): Promise<void> {
    return publishFrame(frame, {
      member: this.principal.member,
      conn: this.id,
      ingress: this.deps.ingress,
      maxBodyChars: this.options.maxBodyChars,
      isClosed: () => this.closed,
      send: (f) => this.send(f),
      error: (code, message, id, room) => this.error(code, message, id, room),
    });
  }

  /** A live message from the hub. */
  deliver(room: string, seq: number, frame: Buffer): void {
    const sub = this.subs.get(room);
    if (!sub) return;
    if (sub.syncing) {
      sub.pending.push({ seq, frame });
      return;
    }
    if (seq <= sub.last) return;
    if (seq === sub.last + 1) {
      sub.last = seq;
      this.send(frame);
      return;
    }
    // A gap: pub/sub dropped something. History has it.
    sub.pending.push({ seq, frame });
    void this.catchUp(room, sub);
  }

  /** The room was taken from a member (this one, or not) or deleted; admins lose only deleted rooms. */
  revoke(room: string, member: string | undefined, reason: RevokeReason): void {
    if (member !== undefined && (this.principal.admin || member !== this.principal.member)) return;
    if (!this.subs.delete(room)) return;
    void this.deps.hub.unsubscribe(room, this);
    this.send(JSON.stringify({ type: 'unsubscribed', room, reason }));
  }

  /** A `read` marker of the room (any member's), for its subscribers. */
  notice(room: string, frame: Buffer): void {
    if (this.subs.has(room)) this.send(frame);
  }

  /** A frame for the member outside any room (member notices), under the same buffer cap. */
  push(frame: string): void {
    this.send(frame);
  }

  resync(room: string): void {
    const sub = this.subs.get(room);
    if (sub && !sub.syncing) void this.catchUp(room, sub);
  }

  /** Sends what history holds after `sub.last`, then what arrived live meanwhile, then goes live. */
  private async catchUp(room: string, sub: RoomSub): Promise<void> {
    sub.syncing = true;
    // After every await: the client may have unsubscribed (or resubscribed) meanwhile.
    const current = () => this.subs.get(room) === sub && !this.closed;
    try {
      for (;;) {
        const page = await this.deps.history.since(room, sub.last, this.options.replayPageSize);
        if (!current()) return;
        if (page.first !== undefined) {
          this.error(
            'history_truncated',
            `messages ${sub.last + 1}..${page.first - 1} of room ${room} are no longer in history`,
            undefined,
            room,
          );
        }
        for (const m of page.messages) {
          if (!(await this.roomToWrite(m.frame)) || !current()) return;
          this.send(m.frame);
          sub.last = m.seq;
        }
        if (page.messages.length === this.options.replayPageSize) continue;

        const pending = sub.pending.splice(0);
        let gap = false;
        for (const m of pending) {
          if (m.seq <= sub.last) continue;
          if (m.seq !== sub.last + 1) {
            gap = true;
            break;
          }
          this.send(m.frame);
          sub.last = m.seq;
        }
        if (!gap) break;
      }
      sub.syncing = false;
    } catch (err) {
      if (!current()) return;
      this.deps.log.warn(
        { err, conn: this.id, room },
        'catching up from history failed; the client should resubscribe with since',
      );
      this.error(
        'unavailable',
        `could not read the history of room ${room}; subscribe again with since=${sub.last}`,
        undefined,
        room,
      );
      this.subs.delete(room);
      await this.deps.hub.unsubscribe(room, this);
    }
  }

  /**
   * During a replay, waits for the socket to drain instead of piling frames up; false if it
   * never does. A frame larger than the whole allowance still goes out on an empty buffer.
   */
  private async roomToWrite(frame: string): Promise<boolean> {
    const deadline = Date.now() + 10_000;
    while (this.wouldOverflow(frame)) {
      if (this.closed) return false;
      if (Date.now() > deadline) {
        this.slowConsumer();
        return false;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return !this.closed;
  }

  private wouldOverflow(frame: string | Buffer): boolean {
    const buffered = this.socket.bufferedAmount;
    return buffered > 0 && buffered + Buffer.byteLength(frame) > this.options.maxBufferedBytes;
  }

  private send(frame: string | Buffer): void {
    if (this.closed) return;
    if (this.wouldOverflow(frame)) {
      this.slowConsumer();
      return;
    }
    if (typeof frame === 'string') this.socket.send(frame);
    else this.socket.send(frame, { binary: false });
  }

  private slowConsumer(): void {
    this.closeFor(
      'slow_consumer',
      CLOSE.SLOW_CONSUMER,
      'slow consumer: reconnect and subscribe with since',
      'closed a slow WebSocket consumer',
    );
  }

  /** Closes the connection on the server's initiative: counted, logged, the client told why. */
  private closeFor(reason: string, code: number, text: string, logMessage: string): void {
    this.deps.metrics.wsClosed.inc({ reason });
    this.deps.log.info(
      { conn: this.id, member: this.principal.member, buffered: this.socket.bufferedAmount },
      logMessage,
    );
    this.socket.close(code, text);
    this.onClose();
  }

  private error(
    code: string,
    message: string,
    id?: string,
    room?: string,
    extra?: { retryAfterMs: number },
  ): void {
    this.send(errorFrame(code, message, id, room, extra));
  }

  /** The socket closed: drop every subscription. */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.feed.close();
    for (const room of this.subs.keys()) void this.deps.hub.unsubscribe(room, this);
    this.subs.clear();
  }
}
