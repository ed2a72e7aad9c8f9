import type { BackoffOptions } from './backoff.ts';
import type { ThresholdClientError } from './errors.ts';

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
