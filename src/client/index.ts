/**
 * A typed Threshold client for Node and browsers (no Node-only imports: the global `fetch`,
 * `crypto` and a `WebSocket` constructor). It asks `/v1/connect` which node to use, reconnects
 * with backoff when that node goes away, and resumes every subscription with `since`: the app
 * sees each room's messages once each, in seq order, with no gap. Publishes are retried under
 * the same id until acked, which the server deduplicates.
 */
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from './backoff.ts';

export { backoffDelay, type BackoffOptions } from './backoff.ts';

/** Method syntax keeps handler parameters bivariant, so `ws`'s and the browser's sockets fit. */
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/** The part of a WebSocket (browser or `ws`) the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

const OPEN = 1;

export interface ClientOptions {
  /** A node's base URL, e.g. `http://127.0.0.1:8080`. Give this or `urls`. */
  url?: string;
  /**
   * Base URLs of several nodes. Each connection asks them in turn for `/v1/connect`, so the
   * client survives the death of the node it first asked.
   */
  urls?: string[];
  /** A client JWT, or a function returning one (called on every connection, to refresh it). */
  token?: string | (() => string | Promise<string>);
  /** Development mode only (no secrets configured): the member to connect as (`?member=`). */
  member?: string;
  /**
   * The WebSocket constructor. Browsers have one; in Node 20 pass `WebSocket` from `ws`.
   * @default globalThis.WebSocket
   */
  WebSocket?: WebSocketConstructor;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
  /** Reconnect waits. */
  backoff?: BackoffOptions;
  /**
   * How long a `/v1/connect` answer or a socket's opening may take before the attempt fails.
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * How often the client sends `{"type":"ping"}`; a connection that brings no frame back
   * within this time is dropped and replaced. 0 turns it off (the server's own pings still
   * drop a silent client on its side).
   * @default 25000
   */
  pingIntervalMs?: number;
}

/** A committed room message, as the server frames it. */
export interface RoomMessage {
  type: 'message';
  room: string;
  seq: number;
  id: string;
  sender: { kind: string; id: string };
  kind: string;
  body: string;
  ts: number;
  [field: string]: unknown;
}

export interface Notification {
  type: 'notification';
  id: string;
  body: string;
  data?: unknown;
  priority?: string;
  sender?: string;
  ts: number;
  [field: string]: unknown;
}

export interface PresenceEvent {
  room: string;
  member: string;
  online: boolean;
}

export interface ReadEvent {
  room: string;
  member: string;
  seq: number;
}

export interface WelcomeRoom {
  id: string;
  seq: number;
  readSeq: number;
  unread: number;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'closed';

export interface ClientEvents {
  state: ClientState;
  error: ThresholdClientError;
  welcome: { member: string | null; rooms: WelcomeRoom[] };
  notification: Notification;
  presence: PresenceEvent;
  read: ReadEvent;
  /** The server ended a subscription (member removed, room deleted); it is not resumed. */
  unsubscribed: { room: string; reason?: string };
}

/** An error frame from the server, a refused connection, or a publish cut short by close(). */
export class ThresholdClientError extends Error {
  override readonly name = 'ThresholdClientError';
  constructor(
    /**
     * The server's error code (`forbidden`, `not_found`, …), or the client's own: `revoked`
     * (closed with 4001), `closed` (close() was called), `connect` (no node answered),
     * `handler` (a subscription's handler threw).
     */
    readonly code: string,
    message: string,
    readonly details: { room?: string; id?: string; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: details.cause });
  }
}

/** Error codes a publish is retried on, under the same id, rather than rejected. */
const RETRIED = new Set(['unavailable', 'timeout', 'rate_limited', 'internal']);

interface Subscription {
  handler: (message: RoomMessage) => void;
  /** The last seq handed to the app; undefined until the server says where the room is. */
  last: number | undefined;
}

interface PendingPublish {
  frame: { type: 'publish'; room: string; body: string; id: string };
  resolve: (ack: { seq: number; id: string }) => void;
  reject: (err: ThresholdClientError) => void;
  retry?: ReturnType<typeof setTimeout>;
}

type Frame = { type: string; [field: string]: unknown };

export class ThresholdClient {
  private readonly urls: string[];
  private readonly options: Required<Pick<ClientOptions, 'connectTimeoutMs' | 'pingIntervalMs'>> & {
    backoff: Required<BackoffOptions>;
  };
  private readonly WebSocketImpl: WebSocketConstructor;
  private readonly fetchImpl: typeof fetch;
  private readonly token: ClientOptions['token'];
  private readonly member: string | undefined;
  private state: ClientState = 'idle';
  private socket: WebSocketLike | undefined;
  private socketAddress: string | undefined;
  private attempt = 0;
  private nextUrl = 0;
  /** The socket URL that last failed: a `/v1/connect` answer naming it again is not trusted. */
  private failedWsUrl: string | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private heardSincePing = true;
  private readonly rooms = new Map<string, Subscription>();
  private mine: ((message: RoomMessage) => void) | undefined;
  /** Rooms the last `welcome` listed: under rooms "mine" their `subscribed` seq is the start. */
  private welcomeRooms = new Set<string>();
  private readonly pending = new Map<string, PendingPublish>();
  private readonly reads = new Map<string, number>();
  private readonly listeners = new Map<keyof ClientEvents, Set<(event: never) => void>>();
  private opened: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(options: ClientOptions) {
    this.urls = (options.urls ?? (options.url ? [options.url] : [])).map((u) =>
      u.replace(/\/+$/, ''),
    );
    if (this.urls.length === 0) throw new TypeError('ThresholdClient: give url or urls');
    const WebSocketImpl =
      options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor | undefined }).WebSocket;
    if (!WebSocketImpl)
      throw new TypeError(
        'ThresholdClient: no global WebSocket; pass one (in Node 20: WebSocket from "ws")',
      );
    this.WebSocketImpl = WebSocketImpl;
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.options = {
      connectTimeoutMs: options.connectTimeoutMs ?? 5000,
      pingIntervalMs: options.pingIntervalMs ?? 25_000,
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
    };
    this.token = options.token;
    this.member = options.member;
  }

  /** The WebSocket URL (without the token) of the current or last connection. */
  get socketUrl(): string | undefined {
    return this.socketAddress;
  }

  /** The connection's state: `connecting` (also between retries), `open`, `closed`. */
  get status(): ClientState {
    return this.state;
  }

  /** Connects (retrying with backoff) and resolves once a socket is open. */
  connect(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(this.closedError());
    if (this.state === 'open') return Promise.resolve();
    const opened = new Promise<void>((resolve, reject) => this.opened.push({ resolve, reject }));
    if (this.state === 'idle') void this.open();
    return opened;
  }

  /**
   * Subscribes to a room: `handler` gets each message once, in seq order, across reconnects.
   * With `since` it first gets the messages after that seq from history. Returns a function
   * that unsubscribes.
   */
  subscribe(
    room: string,
    handler: (message: RoomMessage) => void,
    options: { since?: number } = {},
  ): () => void {
    const sub: Subscription = { handler, last: options.since };
    this.rooms.set(room, sub);
    this.sendSubscribe(room, sub);
    return () => {
      if (this.rooms.get(room) !== sub) return;
      this.rooms.delete(room);
      this.send({ type: 'unsubscribe', room });
    };
  }

  /**
   * Subscribes to every room of the member, and to each room they join later (from its first
   * message). A room subscribed on its own keeps its own handler.
   */
  subscribeMine(handler: (message: RoomMessage) => void): () => void {
    this.mine = handler;
    this.send({ type: 'subscribe', rooms: 'mine' });
    return () => {
      if (this.mine !== handler) return;
      this.mine = undefined;
      for (const [room, sub] of this.rooms)
        if (sub.handler === handler) {
          this.rooms.delete(room);
          this.send({ type: 'unsubscribe', room });
        }
    };
  }

  /**
   * Publishes and resolves with the seq once committed. Sent again under the same `id` after a
   * reconnect or a retryable error until acked (the server commits an id once); rejected with
   * the server's error for anything else, or when the client is closed.
   */
  publish(
    room: string,
    body: string,
    options: { id?: string } = {},
  ): Promise<{ seq: number; id: string }> {
    if (this.state === 'closed') return Promise.reject(this.closedError());
    const id = options.id ?? newId();
    const existing = this.pending.get(id);
    if (existing)
      return new Promise((resolve, reject) => {
        const { resolve: r0, reject: j0 } = existing;
        existing.resolve = (ack) => (r0(ack), resolve(ack));
        existing.reject = (err) => (j0(err), reject(err));
      });
    return new Promise((resolve, reject) => {
      const frame = { type: 'publish' as const, room, body, id };
      this.pending.set(id, { frame, resolve, reject });
      this.send(frame);
    });
  }

  /** Moves the member's read marker in `room` to `seq` (sent again after a reconnect if need be). */
  read(room: string, seq: number): void {
    const marker = Math.max(seq, this.reads.get(room) ?? 0);
    this.reads.set(room, marker);
    if (this.send({ type: 'read', room, seq: marker })) this.reads.delete(room);
  }

  /** Tells the server a notification reached the member, so no fallback follows. */
  received(id: string): void {
    this.send({ type: 'received', id });
  }

  on<K extends keyof ClientEvents>(
    event: K,
    listener: (event: ClientEvents[K]) => void,
  ): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => set.delete(listener as (event: never) => void);
  }

  /** Closes for good: no reconnect; unacked publishes are rejected with code `closed`. */
  close(): void {
    if (this.state === 'closed') return;
    this.setState('closed');
    clearTimeout(this.reconnectTimer);
    this.stopPing();
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, 'client closed');
    const err = this.closedError();
    for (const p of this.pending.values()) {
      clearTimeout(p.retry);
      p.reject(err);
    }
    this.pending.clear();
    for (const o of this.opened.splice(0)) o.reject(err);
  }

  private emit<K extends keyof ClientEvents>(event: K, value: ClientEvents[K]): void {
    for (const listener of this.listeners.get(event) ?? [])
      (listener as (event: ClientEvents[K]) => void)(value);
  }

  private setState(state: ClientState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  private closedError() {
    return new ThresholdClientError('closed', 'the client was closed');
  }

  private async open(): Promise<void> {
    this.setState('connecting');
    let url: string;
    try {
      url = await this.pickSocketUrl();
    } catch (err) {
      this.emit('error', new ThresholdClientError('connect', 'no node answered', { cause: err }));
      return this.retryLater();
    }
    if (this.state === 'closed') return;
    const socket = new this.WebSocketImpl(url);
    this.socket = socket;
    this.socketAddress = url.split('?')[0];
    const openTimer = setTimeout(
      () => this.drop(socket, 'open timed out', url),
      this.options.connectTimeoutMs,
    );
    socket.onopen = () => {
      clearTimeout(openTimer);
      if (this.socket !== socket) return;
      this.attempt = 0;
      this.failedWsUrl = undefined;
      this.setState('open');
      this.resume();
      this.startPing();
      for (const o of this.opened.splice(0)) o.resolve();
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.heardSincePing = true;
      const text = typeof event.data === 'string' ? event.data : String(event.data);
      let frame: Frame;
      try {
        frame = JSON.parse(text) as Frame;
      } catch {
        return;
      }
      this.onFrame(frame);
    };
    socket.onerror = () => {
      // A close event follows; it decides what happens next.
    };
    socket.onclose = (event) => {
      clearTimeout(openTimer);
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.stopPing();
      if (this.state === 'closed') return;
      // Whatever the reason, the next /v1/connect answer should not send us straight back.
      this.failedWsUrl = url;
      if (event.code === 4001) {
        this.emit(
          'error',
          new ThresholdClientError(
            'revoked',
            event.reason || 'the token was revoked; sign in again',
          ),
        );
        return this.close();
      }
      this.retryLater();
    };
  }

  /**
   * Gives up on a socket now rather than waiting for its close event (a dead peer's closing
   * handshake can take half a minute), and reconnects.
   */
  private drop(socket: WebSocketLike, reason: string, failedUrl?: string): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    this.stopPing();
    if (failedUrl !== undefined) this.failedWsUrl = failedUrl;
    try {
      socket.close(4000, reason);
    } catch {
      // Closing a socket that never opened may throw; it is abandoned either way.
    }
    this.retryLater();
  }

  private retryLater(): void {
    if (this.state === 'closed') return;
    this.setState('connecting');
    const delay = backoffDelay(this.attempt++, this.options.backoff);
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  /**
   * Asks each base URL in turn, starting after the one that answered last time, which node to
   * use. A node named again right after its socket failed (it died and the mesh has not noticed
   * yet) is passed over for the answering node itself.
   */
  private async pickSocketUrl(): Promise<string> {
    const query = await this.query();
    let lastError: unknown;
    for (let i = 0; i < this.urls.length; i++) {
      const index = (this.nextUrl + i) % this.urls.length;
      const base = this.urls[index]!;
      try {
        const res = await this.fetchImpl(`${base}/v1/connect`, {
          signal: AbortSignal.timeout(this.options.connectTimeoutMs),
        });
        if (!res.ok) throw new Error(`GET ${base}/v1/connect: HTTP ${res.status}`);
        const { url } = (await res.json()) as { url: string };
        this.nextUrl = index;
        const ws = url === this.failedWsUrl ? ownSocketUrl(base) : url;
        return ws + query;
      } catch (err) {
        lastError = err;
      }
    }
    // No node answered /v1/connect: try the next base URL's socket directly.
    const base = this.urls[this.nextUrl]!;
    this.nextUrl = (this.nextUrl + 1) % this.urls.length;
    if (ownSocketUrl(base) === this.failedWsUrl) throw lastError;
    return ownSocketUrl(base) + query;
  }

  private async query(): Promise<string> {
    const params = new URLSearchParams();
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    if (token) params.set('token', token);
    if (this.member) params.set('member', this.member);
    const q = params.toString();
    return q ? `?${q}` : '';
  }

  /** After (re)opening: every subscription with `since`, then unacked publishes and reads. */
  private resume(): void {
    for (const [room, sub] of this.rooms) this.sendSubscribe(room, sub);
    if (this.mine) this.send({ type: 'subscribe', rooms: 'mine' });
    for (const p of this.pending.values()) {
      clearTimeout(p.retry);
      this.send(p.frame);
    }
    for (const [room, seq] of this.reads) this.send({ type: 'read', room, seq });
    this.reads.clear();
  }

  private sendSubscribe(room: string, sub: Subscription): void {
    this.send(
      sub.last === undefined
        ? { type: 'subscribe', room }
        : { type: 'subscribe', room, since: sub.last },
    );
  }

  /** Sends when open; otherwise `resume()` sends what matters once the socket opens. */
  private send(frame: Frame): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN || this.state !== 'open') return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case 'message':
        return this.onMessage(frame as RoomMessage);
      case 'subscribed': {
        const room = String(frame.room);
        const seq = Number(frame.seq);
        let sub = this.rooms.get(room);
        if (!sub && this.mine)
          this.rooms.set(room, (sub = { handler: this.mine, last: undefined }));
        // Without `since` the server starts after the seq it names, except for a room joined
        // under rooms "mine" while connected, which it sends from its first message.
        if (sub && sub.last === undefined)
          sub.last =
            !this.mine || this.welcomeRooms.has(room) || sub.handler !== this.mine ? seq : 0;
        return;
      }
      case 'ack': {
        const p = this.pending.get(String(frame.id));
        if (!p) return;
        this.pending.delete(String(frame.id));
        clearTimeout(p.retry);
        return p.resolve({ seq: Number(frame.seq), id: String(frame.id) });
      }
      case 'error':
        return this.onError(frame);
      case 'welcome':
        this.welcomeRooms = new Set(((frame.rooms ?? []) as WelcomeRoom[]).map((r) => r.id));
        return this.emit('welcome', {
          member: (frame.member ?? null) as string | null,
          rooms: (frame.rooms ?? []) as WelcomeRoom[],
        });
      case 'unsubscribed':
        if (frame.reason !== undefined) this.rooms.delete(String(frame.room));
        return this.emit('unsubscribed', {
          room: String(frame.room),
          ...(frame.reason !== undefined ? { reason: String(frame.reason) } : {}),
        });
      case 'notification':
        return this.emit('notification', frame as Notification);
      case 'presence':
        return this.emit('presence', {
          room: String(frame.room),
          member: String(frame.member),
          online: frame.online === true,
        });
      case 'read':
        return this.emit('read', {
          room: String(frame.room),
          member: String(frame.member),
          seq: Number(frame.seq),
        });
    }
  }

  private onMessage(message: RoomMessage): void {
    const sub = this.rooms.get(message.room);
    if (!sub) return;
    // A replay after a reconnect may overlap what was delivered live: drop what the app had.
    if (sub.last !== undefined && message.seq <= sub.last) return;
    sub.last = message.seq;
    try {
      sub.handler(message);
    } catch (err) {
      // The message counts as delivered: a handler that throws does not get it again.
      this.emit(
        'error',
        new ThresholdClientError('handler', `the handler of room ${message.room} threw`, {
          room: message.room,
          cause: err,
        }),
      );
    }
  }

  private onError(frame: Frame): void {
    const code = String(frame.code);
    const room = frame.room === undefined ? undefined : String(frame.room);
    const id = frame.id === undefined ? undefined : String(frame.id);
    const retryAfterMs = typeof frame.retryAfterMs === 'number' ? frame.retryAfterMs : undefined;
    const err = new ThresholdClientError(code, String(frame.message ?? code), {
      ...(room !== undefined ? { room } : {}),
      ...(id !== undefined ? { id } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
    const p = id === undefined ? undefined : this.pending.get(id);
    if (p) {
      if (RETRIED.has(code)) {
        clearTimeout(p.retry);
        p.retry = setTimeout(
          () => this.send(p.frame),
          retryAfterMs ?? backoffDelay(2, this.options.backoff),
        );
        return;
      }
      this.pending.delete(id!);
      return p.reject(err);
    }
    // A subscription the server refused is not resumed.
    if (room !== undefined && (code === 'forbidden' || code === 'not_found'))
      this.rooms.delete(room);
    this.emit('error', err);
  }

  private startPing(): void {
    if (this.options.pingIntervalMs <= 0) return;
    this.heardSincePing = true;
    this.pingTimer = setInterval(() => {
      if (!this.heardSincePing) {
        if (this.socket) this.drop(this.socket, 'no answer to ping');
        return;
      }
      this.heardSincePing = false;
      this.send({ type: 'ping' });
    }, this.options.pingIntervalMs);
  }

  private stopPing(): void {
    clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }
}

/** `http(s)://host` → `ws(s)://host/v1/ws`: the node's own socket. */
function ownSocketUrl(base: string): string {
  return `${base.replace(/^http/, 'ws')}/v1/ws`;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A ULID: 48 bits of milliseconds, then 80 random bits, in Crockford base32. */
export function newId(now = Date.now()): string {
  let time = '';
  for (let t = now, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let random = '';
  for (const b of bytes) random += CROCKFORD[b % 32];
  return time + random;
}
