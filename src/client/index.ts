/**
 * A typed Threshold client for Node and browsers (no Node-only imports: the global `fetch`,
 * `crypto` and a `WebSocket` constructor). It asks `/v1/connect` which node to use, reconnects
 * with backoff when that node goes away, and resumes every subscription with `since`: the app
 * sees each room's messages once each, in seq order, with no gap. Publishes are retried under
 * the same id until acked, which the server deduplicates.
 */
import { backoffDelay, type BackoffOptions, DEFAULT_BACKOFF } from './backoff.ts';
import { ThresholdClientError } from './errors.ts';
import { Emitter } from './emitter.ts';
import { Heartbeat } from './heartbeat.ts';
import { newId } from './ids.ts';
import { NodeChooser } from './nodes.ts';
import { PendingPublishes } from './publishes.ts';
import { Subscriptions } from './subscriptions.ts';
import type {
  ClientEvents,
  ClientOptions,
  ClientState,
  Notification,
  RoomMessage,
  WebSocketConstructor,
  WebSocketLike,
  WelcomeRoom,
} from './types.ts';

export { backoffDelay, type BackoffOptions } from './backoff.ts';
export { ThresholdClientError } from './errors.ts';
export { newId } from './ids.ts';
export type * from './types.ts';

const OPEN = 1;

type Frame = { type: string; [field: string]: unknown };

export class ThresholdClient {
  private readonly nodes: NodeChooser;
  private readonly options: Required<Pick<ClientOptions, 'connectTimeoutMs' | 'pingIntervalMs'>> & {
    backoff: Required<BackoffOptions>;
  };
  private readonly WebSocketImpl: WebSocketConstructor;
  private state: ClientState = 'idle';
  private socket: WebSocketLike | undefined;
  private socketAddress: string | undefined;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly heartbeat: Heartbeat;
  private readonly subscriptions = new Subscriptions(
    (frame) => this.send(frame),
    (err) => this.events.emit('error', err),
  );
  private readonly pending: PendingPublishes;
  private readonly reads = new Map<string, number>();
  private readonly events = new Emitter<ClientEvents>();
  private opened: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(options: ClientOptions) {
    const connectTimeoutMs = options.connectTimeoutMs ?? 5000;
    this.nodes = new NodeChooser(options, connectTimeoutMs);
    const WebSocketImpl =
      options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor | undefined }).WebSocket;
    if (!WebSocketImpl)
      throw new TypeError(
        'ThresholdClient: no global WebSocket; pass one (in Node 20: WebSocket from "ws")',
      );
    this.WebSocketImpl = WebSocketImpl;
    this.options = {
      connectTimeoutMs,
      pingIntervalMs: options.pingIntervalMs ?? 25_000,
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
    };
    this.pending = new PendingPublishes((frame) => this.send(frame), this.options.backoff);
    this.heartbeat = new Heartbeat(
      this.options.pingIntervalMs,
      () => this.send({ type: 'ping' }),
      () => {
        if (this.socket) this.drop(this.socket, 'no answer to ping');
      },
    );
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
    return this.subscriptions.add(room, handler, options.since);
  }

  /**
   * Subscribes to every room of the member, and to each room they join later (from its first
   * message). A room subscribed on its own keeps its own handler.
   */
  subscribeMine(handler: (message: RoomMessage) => void): () => void {
    return this.subscriptions.addMine(handler);
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
    return this.pending.add(room, body, options.id ?? newId());
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
    return this.events.on(event, listener);
  }

  /** Closes for good: no reconnect; unacked publishes are rejected with code `closed`. */
  close(): void {
    if (this.state === 'closed') return;
    this.setState('closed');
    clearTimeout(this.reconnectTimer);
    this.heartbeat.stop();
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, 'client closed');
    const err = this.closedError();
    this.pending.rejectAll(err);
    for (const o of this.opened.splice(0)) o.reject(err);
  }

  private setState(state: ClientState): void {
    if (this.state === state) return;
    this.state = state;
    this.events.emit('state', state);
  }

  private closedError() {
    return new ThresholdClientError('closed', 'the client was closed');
  }

  private async open(): Promise<void> {
    this.setState('connecting');
    let url: string;
    try {
      url = await this.nodes.choose();
    } catch (err) {
      this.events.emit(
        'error',
        new ThresholdClientError('connect', 'no node answered', { cause: err }),
      );
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
      this.nodes.opened();
      this.setState('open');
      this.resume();
      this.heartbeat.start();
      for (const o of this.opened.splice(0)) o.resolve();
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.heartbeat.heard();
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
      this.heartbeat.stop();
      if (this.state === 'closed') return;
      // Whatever the reason, the next /v1/connect answer should not send us straight back.
      this.nodes.failed(url);
      if (event.code === 4001) {
        this.events.emit(
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
    this.heartbeat.stop();
    if (failedUrl !== undefined) this.nodes.failed(failedUrl);
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

  /** After (re)opening: every subscription with `since`, then unacked publishes and reads. */
  private resume(): void {
    this.subscriptions.resume();
    this.pending.resend();
    for (const [room, seq] of this.reads) this.send({ type: 'read', room, seq });
    this.reads.clear();
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
        return this.subscriptions.deliver(frame as RoomMessage);
      case 'subscribed':
        return this.subscriptions.subscribed(String(frame.room), Number(frame.seq));
      case 'ack':
        return this.pending.ack(String(frame.id), Number(frame.seq));
      case 'error':
        return this.onError(frame);
      case 'welcome':
        this.subscriptions.welcome(((frame.rooms ?? []) as WelcomeRoom[]).map((r) => r.id));
        return this.events.emit('welcome', {
          member: (frame.member ?? null) as string | null,
          rooms: (frame.rooms ?? []) as WelcomeRoom[],
        });
      case 'unsubscribed':
        if (frame.reason !== undefined) this.subscriptions.forget(String(frame.room));
        return this.events.emit('unsubscribed', {
          room: String(frame.room),
          ...(frame.reason !== undefined ? { reason: String(frame.reason) } : {}),
        });
      case 'notification':
        return this.events.emit('notification', frame as Notification);
      case 'presence':
        return this.events.emit('presence', {
          room: String(frame.room),
          member: String(frame.member),
          online: frame.online === true,
        });
      case 'read':
        return this.events.emit('read', {
          room: String(frame.room),
          member: String(frame.member),
          seq: Number(frame.seq),
        });
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
    if (this.pending.failed(id, err, retryAfterMs)) return;
    // A subscription the server refused is not resumed.
    if (room !== undefined && (code === 'forbidden' || code === 'not_found'))
      this.subscriptions.forget(room);
    this.events.emit('error', err);
  }
}
