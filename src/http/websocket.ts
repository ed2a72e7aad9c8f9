import { type IncomingMessage, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ServerType } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, Hono } from 'hono';
import { type WebSocket, WebSocketServer } from 'ws';
import { type Config, list } from '../config.ts';
import { ConnectionLimitError, ForbiddenError, ValidationError } from '../errors.ts';
import type { AppEnv } from './app.ts';
import { memberOf } from './auth.ts';
import { ConnectionLimits } from './connection-limits.ts';
import { corkedSocket } from './corked-socket.ts';
import { normalizeOrigin } from './cors.ts';
import { CLOSE } from './websocket-frames.ts';
import { welcomeFrame } from './websocket-mine.ts';
import {
  type Principal,
  type SessionDeps,
  type SessionOptions,
  WebSocketSession,
} from './websocket-session.ts';

export interface WebSocketOptions extends SessionOptions {
  /** Frames larger than this close the connection with 1009. */
  maxFrameBytes: number;
  /** Interval of server pings; a peer that has not answered the previous one is dropped. */
  heartbeatMs: number;
  /** Origins a browser may connect from (`scheme://host[:port]`, any case); empty: any. */
  allowedOrigins: string[];
  /** Open connections per peer address on this node (0: no limit). */
  maxConnectionsPerIp: number;
  /** Open connections per member on this node (0: no limit). */
  maxConnectionsPerMember: number;
}

/** What the endpoint tells presence (delivery/presence.ts) as a member's sockets come and go. */
export interface PresenceHooks {
  connected(member: string): Promise<void>;
  disconnected(member: string): Promise<void>;
}

export interface WebSocketEndpoint {
  inject(server: ServerType): void;
  readonly connections: number;
  /** Closes every connection with 1001 (shutdown). */
  closeAll(): void;
  /** Closes (4001) the member's connections opened before `before` (ms): logout-all. */
  closeMember(member: string, before: number): void;
  /** Closes (4001) the connections opened with an API key that was revoked. */
  closeKey(key: string): void;
  /** Sends `frame` (JSON text) to each of the member's connections on this node. */
  notifyMember(member: string, frame: string): void;
  /** Drops the connections that did not finish closing. */
  terminateAll(): void;
  stop(): void;
}

/** The WebSocket settings from the config (`ws.*`, and the body limit of a publish). */
export function websocketOptions(config: Pick<Config, 'ws' | 'http'>): WebSocketOptions {
  const { ws } = config;
  return {
    maxFrameBytes: ws.maxFrameBytes,
    heartbeatMs: ws.heartbeatMs,
    maxBufferedBytes: ws.maxBufferedBytes,
    replayPageSize: ws.replayPageSize,
    maxBodyChars: config.http.maxBodyChars,
    framesPerSecond: ws.framesPerSecond,
    frameBurst: ws.frameBurst,
    maxDroppedFrames: ws.maxDroppedFrames,
    allowedOrigins: list(ws.allowedOrigins),
    maxConnectionsPerIp: ws.maxConnectionsPerIp,
    maxConnectionsPerMember: ws.maxConnectionsPerMember,
  };
}

/**
 * `GET /v1/ws`: the credentials were checked by the `/v1/*` middleware before the upgrade,
 * then the Origin and the connection caps, so every session here is authenticated and
 * counted. A refused upgrade gets the whole problem+json answer (status, `Retry-After`, body).
 */
export function mountWebSocket(
  app: Hono<AppEnv>,
  deps: SessionDeps & { presence: PresenceHooks },
  options: WebSocketOptions,
): WebSocketEndpoint {
  // ws itself, not @hono/node-ws: that helper parks every upgrade in a map until ws emits the
  // connection, so an upgrade whose socket died on the way stayed there for good.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxFrameBytes,
    // Never echo a credential back (auth.ts protocolBearer): the first other protocol, if any.
    handleProtocols: (offered) => [...offered].find((p) => !p.startsWith('bearer.')) ?? false,
  });

  const sockets = new Map<
    WebSocket,
    {
      session: WebSocketSession;
      alive: boolean;
      member?: string | undefined;
      key?: string | undefined;
      openedAt: number;
    }
  >();
  const limits = new ConnectionLimits({
    perIp: options.maxConnectionsPerIp,
    perMember: options.maxConnectionsPerMember,
  });
  /** Upgrades that passed every check: who connects, and their slot (given back on close). */
  const upgrading = new WeakMap<IncomingMessage, Admitted>();
  const allowed = new Set(options.allowedOrigins.map(normalizeOrigin));

  app.get('/v1/ws', async (c, next) => {
    // Only the server's 'upgrade' event (below) may admit an upgrade: a request that says
    // `Upgrade: websocket` without `Connection: Upgrade` arrives as plain HTTP, where there is
    // no socket to hand over.
    if (!(c.env as UpgradeEnv).upgrade) {
      if (c.req.header('upgrade') === undefined) return next();
      throw new ValidationError(
        'a WebSocket upgrade takes Connection: Upgrade and Upgrade: websocket',
        'Connection',
      );
    }
    checkHandshake(c);
    // Browsers always send Origin on a WebSocket upgrade; other clients may leave it out, and
    // are then let in on their token alone (a page cannot make a browser drop the header).
    const origin = c.req.header('origin');
    if (allowed.size > 0 && origin !== undefined && !allowed.has(origin)) {
      deps.metrics.wsRefused.inc({ reason: 'origin' });
      throw new ForbiddenError(
        `Origin ${origin.slice(0, 200)} may not open WebSocket connections (ws.allowedOrigins)`,
      );
    }
    const principal = c.get('principal');
    if (principal.kind === 'key')
      throw new ForbiddenError('an API key opens a WebSocket only with the admin scope');
    const member = memberOf(principal);
    const key = principal.kind === 'admin' ? principal.key : undefined;
    let release: () => void;
    try {
      release = limits.acquire(getConnInfo(c).remote.address ?? '', member);
    } catch (err) {
      if (err instanceof ConnectionLimitError) deps.metrics.wsRefused.inc({ reason: err.limit });
      throw err;
    }
    const identity: Principal =
      principal.kind === 'member'
        ? { member: principal.member, admin: false }
        : { member: principal.kind === 'dev' ? principal.member : undefined, admin: true };
    let welcome: string;
    try {
      welcome = await welcomeFrame(identity.member, deps.markers);
    } catch (err) {
      release();
      throw err;
    }
    upgrading.set(incoming(c), { identity, key, release, welcome });
    return c.body(null, 200);
  });

  /** A handshake ws completed: its session and heartbeat (inject gives the slot back). */
  function open(raw: WebSocket, { identity, key, welcome }: Admitted): void {
    const session = new WebSocketSession(corkedSocket(raw), identity, deps, options);
    session.start(welcome);
    sockets.set(raw, { session, alive: true, member: identity.member, key, openedAt: Date.now() });
    deps.metrics.wsConnections.set(sockets.size);
    const { member } = identity;
    if (member !== undefined) void deps.presence.connected(member);
    raw.on('pong', () => {
      const entry = sockets.get(raw);
      if (entry) entry.alive = true;
    });
    raw.on('message', (data, isBinary) => {
      // Binary frames are not part of the protocol: answered like an unparsable text frame.
      void session.onText(isBinary ? '' : data.toString());
    });
    // ws reports socket errors here before it closes; the close below does the cleanup.
    raw.on('error', () => undefined);
    raw.once('close', () => {
      session.onClose();
      sockets.delete(raw);
      deps.metrics.wsConnections.set(sockets.size);
      if (member !== undefined) void deps.presence.disconnected(member);
    });
  }

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

  /**
   * In place of @hono/node-ws's injectWebSocket, which answers a refused upgrade with its
   * status alone: the client gets the problem+json body and headers (Retry-After) too.
   */
  function inject(server: ServerType): void {
    server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', () => socket.destroy());
      // Before anything async: a client that resets during the token check must still give its
      // slot back, and a listener added to an already closed socket would never fire.
      socket.once('close', () => upgrading.get(request)?.release());
      void upgrade(request, socket, head).catch((err: unknown) => {
        deps.log.error({ err }, 'WebSocket upgrade failed');
        socket.destroy();
      });
    });
  }

  async function upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    const headers = new Headers();
    for (const [name, value] of Object.entries(request.headers)) {
      const first = Array.isArray(value) ? value[0] : value;
      if (first !== undefined) headers.append(name, first);
    }
    const response = await app.request(
      new URL(request.url ?? '/', 'http://localhost'),
      { method: request.method, headers },
      { incoming: request, outgoing: undefined, upgrade: true } satisfies UpgradeEnv,
    );
    const admitted = upgrading.get(request);
    if (!admitted || response.status !== 200) {
      admitted?.release();
      await refuse(socket, response);
      return;
    }
    // ws would drop a dead socket without a word (and never call back).
    if (socket.destroyed) {
      admitted.release();
      return;
    }
    wss.handleUpgrade(request, socket, head, (raw) => open(raw, admitted));
  }

  return {
    inject,
    get connections() {
      return sockets.size;
    },
    closeAll() {
      for (const raw of sockets.keys()) {
        deps.metrics.wsClosed.inc({ reason: 'shutdown' });
        raw.close(CLOSE.GOING_AWAY, 'node shutting down: reconnect and subscribe with since');
      }
    },
    closeMember(member, before) {
      for (const [raw, entry] of sockets) {
        if (entry.member !== member || entry.openedAt > before) continue;
        deps.metrics.wsClosed.inc({ reason: 'revoked' });
        raw.close(CLOSE.REVOKED, 'logged out everywhere: sign in again');
      }
    },
    closeKey(key) {
      for (const [raw, entry] of sockets) {
        if (entry.key !== key) continue;
        deps.metrics.wsClosed.inc({ reason: 'revoked' });
        raw.close(CLOSE.REVOKED, 'API key revoked');
      }
    },
    notifyMember(member, frame) {
      for (const entry of sockets.values()) if (entry.member === member) entry.session.push(frame);
    },
    terminateAll() {
      for (const raw of sockets.keys()) raw.terminate();
    },
    stop() {
      clearInterval(heartbeat);
    },
  };
}

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const PROTOCOLS = new RegExp(`^${TOKEN}(?:[ \\t]*,[ \\t]*${TOKEN})*$`);

/**
 * The handshake headers ws checks, checked first so a malformed one gets a problem+json 400
 * naming it (ws would answer with an HTML page).
 */
function checkHandshake(c: Context): void {
  // Hono routes HEAD to GET handlers; ws would answer it with an HTML 405.
  if (c.req.method !== 'GET')
    throw new ValidationError(`a WebSocket upgrade is a GET, not a ${c.req.method}`, 'method');
  if (c.req.header('upgrade')?.toLowerCase() !== 'websocket')
    throw new ValidationError('Upgrade: this endpoint upgrades to websocket only', 'Upgrade');
  if (!/^[+/0-9A-Za-z]{22}==$/.test(c.req.header('sec-websocket-key') ?? ''))
    throw new ValidationError(
      'Sec-WebSocket-Key: missing or not 16 bytes in base64 (RFC 6455 §4.1)',
      'Sec-WebSocket-Key',
    );
  if (!['8', '13'].includes(c.req.header('sec-websocket-version') ?? ''))
    throw new ValidationError('Sec-WebSocket-Version: expected 13', 'Sec-WebSocket-Version');
  const protocols = c.req.header('sec-websocket-protocol');
  if (protocols !== undefined) {
    const list = protocols.split(',').map((p) => p.trim());
    if (!PROTOCOLS.test(protocols) || new Set(list).size !== list.length)
      throw new ValidationError(
        'Sec-WebSocket-Protocol: expected distinct comma-separated tokens',
        'Sec-WebSocket-Protocol',
      );
  }
}

/** An upgrade that passed every check. */
interface Admitted {
  identity: Principal;
  /** The API key it connected with, if any (closed when the key is revoked). */
  key: string | undefined;
  /** Gives the connection slot back (idempotent). */
  release: () => void;
  /** The connection's first frame. */
  welcome: string;
}

/** What {@link inject} passes to the app for an upgrade (the HTTP server passes no `upgrade`). */
interface UpgradeEnv {
  incoming: IncomingMessage;
  outgoing: undefined;
  upgrade?: true;
}

/** The Node request under a Hono context (what @hono/node-server passes as `c.env.incoming`). */
function incoming(c: Context): IncomingMessage {
  return (c.env as UpgradeEnv).incoming;
}

/** Writes a refused upgrade's whole HTTP answer on the raw socket and closes it. */
async function refuse(socket: Duplex, response: Response): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer());
  const lines = [
    `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? ''}`,
    'connection: close',
    `content-length: ${body.length}`,
  ];
  response.headers.forEach((value, name) => {
    if (name !== 'connection' && name !== 'content-length') lines.push(`${name}: ${value}`);
  });
  socket.end(Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`), body]));
}
