import type { ServerType } from '@hono/node-server';
import { createNodeWebSocket } from '@hono/node-ws';
import type { Hono } from 'hono';
import type { WebSocket } from 'ws';
import {
  CLOSE,
  type SessionDeps,
  type SessionOptions,
  WebSocketSession,
} from '../delivery/websocket-session.ts';
import type { AppEnv } from './app.ts';
import { corkedSocket } from './corked-socket.ts';

export interface WebSocketOptions extends SessionOptions {
  /** Frames larger than this close the connection with 1009. */
  maxFrameBytes: number;
  /** Interval of server pings; a peer that has not answered the previous one is dropped. */
  heartbeatMs: number;
}

export interface WebSocketEndpoint {
  inject(server: ServerType): void;
  readonly connections: number;
  /** Closes every connection with 1001 (shutdown). */
  closeAll(): void;
  /** Drops the connections that did not finish closing. */
  terminateAll(): void;
  stop(): void;
}

/**
 * `GET /v1/ws`: the credentials were checked by the `/v1/*` middleware before the upgrade
 * (a refused upgrade gets the problem's HTTP status), so every session here is authenticated.
 */
export function mountWebSocket(
  app: Hono<AppEnv>,
  deps: SessionDeps,
  options: WebSocketOptions,
): WebSocketEndpoint {
  const { injectWebSocket, upgradeWebSocket, wss } = createNodeWebSocket({ app });
  // @hono/node-ws creates the server without options; ws reads maxPayload at each upgrade.
  (wss.options as { maxPayload?: number }).maxPayload = options.maxFrameBytes;

  const sockets = new Map<WebSocket, { session: WebSocketSession; alive: boolean }>();

  app.get(
    '/v1/ws',
    upgradeWebSocket((c) => {
      const principal = c.get('principal');
      const identity =
        principal.kind === 'member'
          ? { member: principal.member, admin: false }
          : { member: principal.kind === 'dev' ? principal.member : undefined, admin: true };
      let session: WebSocketSession | undefined;
      return {
        onOpen(_event, ws) {
          const raw = ws.raw as WebSocket;
          session = new WebSocketSession(corkedSocket(raw), identity, deps, options);
          sockets.set(raw, { session, alive: true });
          raw.on('pong', () => {
            const entry = sockets.get(raw);
            if (entry) entry.alive = true;
          });
          deps.metrics.wsConnections.set(sockets.size);
        },
        onMessage(event) {
          if (typeof event.data !== 'string') {
            void session?.onText('');
            return;
          }
          void session?.onText(event.data);
        },
        onClose(_event, ws) {
          session?.onClose();
          sockets.delete(ws.raw as WebSocket);
          deps.metrics.wsConnections.set(sockets.size);
        },
      };
    }),
  );

  const heartbeat = setInterval(() => {
    for (const [raw, entry] of sockets) {
      if (!entry.alive) {
        deps.metrics.wsClosed.inc({ reason: 'heartbeat' });
        raw.terminate();
        continue;
      }
      entry.alive = false;
      raw.ping();
    }
  }, options.heartbeatMs);
  heartbeat.unref();

  return {
    inject: (server) => injectWebSocket(server),
    get connections() {
      return sockets.size;
    },
    closeAll() {
      for (const raw of sockets.keys()) {
        deps.metrics.wsClosed.inc({ reason: 'shutdown' });
        raw.close(CLOSE.GOING_AWAY, 'node shutting down: reconnect and subscribe with since');
      }
    },
    terminateAll() {
      for (const raw of sockets.keys()) raw.terminate();
    },
    stop() {
      clearInterval(heartbeat);
    },
  };
}
