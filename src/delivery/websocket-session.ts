import { z } from 'zod';
import { RateLimitedError, ThresholdError, isRedisUnavailable } from '../errors.ts';
import { RoomId, type Sender, senderOfMember } from '../funnel/envelope.ts';
import type { Ingress } from '../ingress/ingress.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { History } from '../rooms/history.ts';
import { assertMayRead } from '../rooms/access.ts';
import type { RevokeReason } from '../rooms/revocation.ts';
import type { RoomsStore } from '../rooms/store.ts';
import type { LiveHub, LiveSubscriber } from './live-hub.ts';
import { TokenBuckets } from './token-bucket.ts';

/** Close codes a client can act on. */
export const CLOSE = {
  /** The client did not read fast enough; reconnect and subscribe with `since`. */
  SLOW_CONSUMER: 4008,
  /** No pong to the server's ping. */
  HEARTBEAT_TIMEOUT: 4009,
  /** The node is shutting down; reconnect (any node). */
  GOING_AWAY: 1001,
  /** Policy violation: the client kept sending far over its frame rate. */
  POLICY_VIOLATION: 1008,
} as const;

/** The part of a WebSocket the session uses (ws's WebSocket satisfies it). */
export interface SocketLike {
  send(data: string): void;
  /** Live frames are Buffers holding UTF-8 JSON, sent as text frames (`binary: false`). */
  send(data: Buffer, options: { binary: boolean }): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
}

export interface Principal {
  /** The member id the client acts as (`user:alice`); undefined for the admin token. */
  member?: string | undefined;
  /** Admin token or open development mode: may read any room. */
  admin: boolean;
}

export interface SessionDeps {
  hub: LiveHub;
  history: History;
  rooms: RoomsStore;
  ingress: Ingress;
  metrics: Metrics;
  log: Logger;
}

export interface SessionOptions {
  maxBufferedBytes: number;
  replayPageSize: number;
  maxBodyChars: number;
  /** Frames a client may send per second, sustained (0: no limit); more are dropped. */
  framesPerSecond: number;
  /** Frames a client may send at once after a quiet spell. */
  frameBurst: number;
  /**
   * Frames a client may have dropped before it is closed with 1008; they are forgiven at
   * `framesPerSecond`, so only a client sustained at over twice the rate reaches it.
   */
  maxDroppedFrames: number;
}

const ClientFrame = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('subscribe'),
    room: RoomId,
    since: z.number().int().min(0).optional(),
  }),
  z.object({ type: z.literal('unsubscribe'), room: RoomId }),
  z.object({
    type: z.literal('publish'),
    room: RoomId,
    body: z.string().min(1),
    id: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x21-\x7e]+$/, 'expected printable ASCII without spaces')
      .optional(),
    media: z.array(z.url()).max(10).optional(),
  }),
  z.object({ type: z.literal('ping') }),
]);
type ClientFrame = z.infer<typeof ClientFrame>;

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
  private readonly frames: TokenBuckets;
  /** Drops the client may still run up before it is closed (see admit). */
  private readonly patience: TokenBuckets;
  /** Dropping frames since the last one let through (the client has been told). */
  private dropping = false;

  constructor(
    private readonly socket: SocketLike,
    private readonly principal: Principal,
    private readonly deps: SessionDeps,
    private readonly options: SessionOptions,
  ) {
    this.frames = new TokenBuckets(options.framesPerSecond, options.frameBurst);
    this.patience = new TokenBuckets(options.framesPerSecond, options.maxDroppedFrames);
  }

  async onText(text: string): Promise<void> {
    if (!this.admit()) return;
    let frame: ClientFrame;
    try {
      frame = ClientFrame.parse(JSON.parse(text));
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
          await this.subscribe(frame.room, frame.since);
          return;
        case 'unsubscribe':
          await this.unsubscribe(frame.room);
          return;
        case 'publish':
          await this.publish(frame);
          return;
      }
    } catch (err) {
      const id = frame.type === 'publish' ? frame.id : undefined;
      const room = 'room' in frame ? frame.room : undefined;
      if (err instanceof RateLimitedError)
        this.error(err.code, err.message, id, room, { retryAfterMs: err.retryAfterMs });
      else if (err instanceof ThresholdError) this.error(err.code, err.message, id, room);
      else if (isRedisUnavailable(err)) {
        this.error('unavailable', 'Redis is unavailable right now; retry shortly', id, room);
      } else {
        this.deps.log.error({ err, conn: this.id }, 'WebSocket frame failed');
        this.error('internal', 'the request failed on the server; retry', id);
      }
    }
  }

  /**
   * The per-connection frame rate: a frame over it is dropped unread. The first drop of a run
   * tells the client (one `rate_limited` error, not one per frame, so a flood does not turn
   * into a flood of answers). Each drop also spends the client's patience, `maxDroppedFrames`
   * drops that come back at the frame rate: a client that keeps sending at more than twice
   * the rate runs out and is closed (1008); one that only bursts over it now and then is not.
   */
  private admit(): boolean {
    if (this.closed) return false;
    if (this.options.framesPerSecond <= 0) return true;
    const waitMs = this.frames.take('frames');
    if (waitMs === 0) {
      this.dropping = false;
      return true;
    }
    this.deps.metrics.rateLimited.inc({ limit: 'ws_frame' });
    if (this.patience.take('drops') > 0) {
      this.closeFor(
        'rate_limited',
        CLOSE.POLICY_VIOLATION,
        'too many frames over the rate limit',
        'closed a WebSocket client that kept sending over its frame rate',
      );
    } else if (!this.dropping) {
      this.dropping = true;
      this.error(
        'rate_limited',
        `over ${this.options.framesPerSecond} frames per second: frames are dropped until the rate falls`,
        undefined,
        undefined,
        { retryAfterMs: waitMs },
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
    } catch (err) {
      if (this.subs.get(room) === sub) await this.unsubscribe(room, false);
      throw err;
    }
    if (this.subs.get(room) !== sub || this.closed) return;
    // Checked again now that pub/sub is confirmed: a removal (or deletion) that came before
    // this read fails it, and one that comes after reaches this session as a revocation.
    try {
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

  private async publish(frame: Extract<ClientFrame, { type: 'publish' }>): Promise<void> {
    const { member } = this.principal;
    if (frame.body.length > this.options.maxBodyChars) {
      this.error(
        'invalid_request',
        `body is longer than ${this.options.maxBodyChars} characters`,
        frame.id,
        frame.room,
      );
      return;
    }
    const sender: Sender = member ? senderOfMember(member) : { kind: 'service', id: 'admin' };
    const accepted = await this.deps.ingress.submit(
      {
        room: frame.room,
        source: 'ws',
        sender,
        kind: member ? 'chat' : 'notification',
        body: frame.body,
        media: frame.media,
        clientKey: frame.id,
        conn: this.id,
        rateLimited: member,
      },
      true,
    );
    const receipt = await accepted.receipt?.promise.catch((err: Error) => {
      if (!this.closed)
        this.error(
          err instanceof ThresholdError ? err.code : 'timeout',
          err.message,
          frame.id,
          frame.room,
        );
      return undefined;
    });
    if (!receipt || this.closed) return;
    if (receipt.status === 'rejected')
      this.error(
        receipt.code ?? 'rejected',
        receipt.message ?? 'message rejected',
        frame.id,
        frame.room,
      );
    else this.send(JSON.stringify({ type: 'ack', id: frame.id ?? accepted.id, seq: receipt.seq }));
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
    const frame: Record<string, unknown> = { type: 'error', code, message };
    if (id !== undefined) frame.id = id;
    if (room !== undefined) frame.room = room;
    if (extra) Object.assign(frame, extra);
    this.send(JSON.stringify(frame));
  }

  /** The socket closed: drop every subscription. */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const room of this.subs.keys()) void this.deps.hub.unsubscribe(room, this);
    this.subs.clear();
  }
}

function describeFrameError(err: unknown): string {
  if (err instanceof SyntaxError)
    return 'frames are JSON text: {"type":"subscribe"|"unsubscribe"|"publish"|"ping", ...}';
  if (err instanceof z.ZodError) {
    const issue = err.issues[0];
    const field = issue?.path.join('.') || 'type';
    return `${field}: ${issue?.message ?? 'invalid'}`;
  }
  return 'invalid frame';
}
