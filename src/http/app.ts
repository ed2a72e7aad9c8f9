import { type Context, Hono } from 'hono';
import {
  ForbiddenError,
  NotFoundError,
  PayloadTooLargeError,
  RateLimitedError,
  UnavailableError,
  ValidationError,
} from '../errors.ts';
import { MemberId, RoomId, type Sender, senderOfMember } from '../funnel/envelope.ts';
import type { Ingress } from '../ingress/ingress.ts';
import type { Logger } from '../log.ts';
import type { ClusterView } from '../mesh/cluster-view.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { BackwardPage, HistoryPage } from '../rooms/history.ts';
import { assertMayRead } from '../rooms/access.ts';
import type { RoomsStore } from '../rooms/store.ts';
import { type Auth, bearer, type Principal, protocolBearer, requireAdmin } from './auth.ts';
import type { OperatorDeps } from './operator.ts';
import { mountConsole } from './console-routes.ts';
import { type ConversationDeps, conversationRoutes } from './conversations.ts';
import { bodyLimit } from './body.ts';
import { cors } from './cors.ts';
import { mountDeadLetters } from './dead-letter-routes.ts';
import { mountOpenApi } from './openapi.ts';
import { assertReachable, intQuery, memberParam, readerOf, readJson, roomParam } from './params.ts';
import { problemResponse, toProblem } from './problem.ts';
import { NewRoomBody, PublishBody } from './room-bodies.ts';

export interface HistoryReader {
  since(room: string, since: number, limit: number): Promise<HistoryPage>;
  before(room: string, before: number | undefined, limit: number): Promise<BackwardPage>;
  status(room: string, id: string): Promise<Record<string, string> | undefined>;
}

export interface AppDeps {
  auth: Auth;
  cluster: Pick<ClusterView, 'state' | 'leastLoaded'>;
  rooms: RoomsStore;
  ingress: Ingress;
  history: HistoryReader;
  metrics: Metrics;
  /** Members' conversations (conversations.ts): mounted when given. */
  conversations?: ConversationDeps;
  /** Dead letters and partition status (the console's): mounted when given. */
  operator?: OperatorDeps;
  health: { ready(): boolean; draining(): boolean };
  log: Logger;
  /** The release, shown in /openapi.json (package.json's). */
  version?: string;
  options: {
    maxBodyBytes: number;
    maxBodyChars: number;
    /** Member-id prefixes some channel reaches (`user`, `phone`, `webhook`…); others are refused. */
    memberPrefixes?: readonly string[];
    /** Routes whose bodies may be larger than maxBodyBytes (tag uploads: TAG_UPLOAD_PATH). */
    largeBodies?: readonly { path: RegExp; maxBytes: number }[];
    /** Routes under /v1 that take no credentials (sign-in: PUBLIC_AUTH_PATHS). */
    publicPaths?: readonly string[];
    /** The configured validators and handlers a room's settings may name. */
    plugins?: { validators: readonly string[]; handlers: readonly string[] };
    /** Origins browser pages may call from (http.allowedOrigins); absent: no CORS at all. */
    allowedOrigins?: readonly string[];
  };
}

export type AppEnv = { Variables: { principal: Principal } };

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
const MAX_HISTORY_PAGE = 1000;

/** The public HTTP API (DESIGN §5). WebSocket wiring is added by `websocket.ts`. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { auth, cluster, rooms, ingress, history, metrics, health, log, options } = deps;
  const app = new Hono<AppEnv>();

  // While draining, keep-alive clients are told to reconnect (to another node): the server's
  // close waits for their connections, and the node's partitions wait for the close.
  app.use('*', async (c, next) => {
    await next();
    if (health.draining()) c.res.headers.set('connection', 'close');
  });
  app.onError((err, c) => {
    const problem = toProblem(err);
    if (problem.status >= 500 && problem.status !== 503 && problem.status !== 504) {
      log.error({ err, method: c.req.method, path: c.req.path }, 'request failed');
    }
    return problemResponse(c, problem, problemHeaders(err, problem.status));
  });
  app.notFound((c) =>
    problemResponse(c, {
      status: 404,
      code: 'not_found',
      detail: `no route for ${c.req.method} ${c.req.path}`,
    }),
  );

  // Before the credentials check: a browser's preflight carries no token.
  if (options.allowedOrigins) app.use('*', cors(options.allowedOrigins));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    if (health.draining()) throw new UnavailableError('the node is shutting down');
    if (!health.ready())
      throw new UnavailableError(
        'the node has not yet joined the mesh or does not hold its partitions yet',
      );
    return c.json({ status: 'ready' });
  });
  app.get('/metrics', async (c) =>
    c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }),
  );
  mountOpenApi(app, deps.version ?? '0.0.0');
  mountConsole(app);

  app.use('/v1/*', async (c, next) => {
    if (health.draining())
      throw new UnavailableError('the node is shutting down; retry on another node');
    if (options.publicPaths?.includes(c.req.path)) return next();
    // Browsers cannot set headers on a WebSocket upgrade, so /v1/ws alone takes `?token=`, or
    // (kept out of URLs and access logs) a `bearer.<base64url>` subprotocol; elsewhere a token
    // in the URL would only end up in access logs.
    const ws = c.req.path === '/v1/ws';
    const token =
      bearer(c.req.header('authorization')) ??
      (ws ? protocolBearer(c.req.header('sec-websocket-protocol')) : undefined) ??
      (ws ? c.req.query('token') : undefined);
    const principal = await auth.principal(token, c.req.query('member'));
    c.set('principal', principal);
    await next();
  });
  const limit = bodyLimit(options.maxBodyBytes);
  const larger = (options.largeBodies ?? []).map(({ path, maxBytes }) => ({
    path,
    limit: bodyLimit(maxBytes),
  }));
  app.use('/v1/*', (c, next) =>
    (larger.find(({ path }) => path.test(c.req.path))?.limit ?? limit)(c, next),
  );

  const admin = (c: Context<AppEnv>) => requireAdmin(c.get('principal'));
  if (deps.operator) mountDeadLetters(app, deps.operator.deadLetters);
  // First: a member's POST /v1/rooms starts a conversation; the admin's falls through.
  if (deps.conversations) conversationRoutes(app, deps.conversations);

  app.post('/v1/rooms', async (c) => {
    admin(c);
    const body = await readJson(c, NewRoomBody);
    for (const family of ['validators', 'handlers'] as const) {
      const known = options.plugins?.[family] ?? [];
      const unknown = body.settings?.[family]?.find((name) => !known.includes(name));
      if (unknown !== undefined)
        throw new ValidationError(
          `settings.${family}: no ${family.slice(0, -1)} named ${unknown} in the config (known: ${known.join(', ') || 'none'})`,
          `settings.${family}`,
        );
    }
    return c.json(await rooms.create(body), 201);
  });
  app.get('/v1/rooms', async (c) => {
    admin(c);
    return c.json({ rooms: await rooms.list() });
  });
  app.get('/v1/rooms/:room', async (c) => {
    admin(c);
    const id = roomParam(c);
    const room = await rooms.get(id);
    if (!room) throw new NotFoundError(`room ${id} does not exist`);
    return c.json(room);
  });
  app.delete('/v1/rooms/:room', async (c) => {
    admin(c);
    await rooms.delete(roomParam(c));
    return c.body(null, 204);
  });

  app.put('/v1/rooms/:room/members/:member', async (c) => {
    admin(c);
    const room = roomParam(c);
    const member = memberParam(c);
    assertReachable(member, options.memberPrefixes, 'member');
    const added = await rooms.addMember(room, member);
    return c.json({ room, member }, added ? 201 : 200);
  });
  app.delete('/v1/rooms/:room/members/:member', async (c) => {
    admin(c);
    const room = roomParam(c);
    const member = memberParam(c);
    if (!(await rooms.removeMember(room, member)))
      throw new NotFoundError(`${member} is not a member of room ${room}`);
    return c.body(null, 204);
  });
  app.get('/v1/rooms/:room/members', async (c) => {
    admin(c);
    const room = roomParam(c);
    return c.json({ room, members: await rooms.members(room) });
  });

  app.post('/v1/rooms/:room/messages', async (c) => {
    const room = roomParam(c);
    const principal = c.get('principal');
    const body = await readJson(c, PublishBody);
    if (body.body.length > options.maxBodyChars) {
      throw new ValidationError(`body: longer than ${options.maxBodyChars} characters`, 'body');
    }
    const key = c.req.header('idempotency-key');
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      throw new ValidationError(
        'Idempotency-Key: 1-128 printable ASCII characters without spaces',
        'Idempotency-Key',
      );
    }
    if (principal.kind === 'key' && !principal.rooms.includes(room))
      throw new ForbiddenError(
        `this API key may not publish to room ${room} (its publish scopes: ${principal.rooms.map((r) => `publish:${r}`).join(', ') || 'none'})`,
      );
    const sender = senderFor(principal, body.sender);
    const wait = ['1', 'true'].includes(c.req.query('wait') ?? '');
    const accepted = await ingress.submit(
      {
        room,
        source: 'http',
        sender,
        kind: sender.kind === 'service' ? 'notification' : 'chat',
        body: body.body,
        media: body.media,
        clientKey: key,
        rateLimited: rateLimitedAs(principal),
      },
      wait,
    );
    if (!accepted.receipt) return c.json({ id: accepted.id, status: 'accepted' }, 202);
    const receipt = await accepted.receipt.promise.catch(() => undefined);
    // Not committed in time: it is durable in the funnel, so say accepted rather than fail.
    if (!receipt) return c.json({ id: accepted.id, status: 'pending' }, 202);
    if (receipt.status === 'rejected')
      throw new NotFoundError(receipt.message ?? `room ${room} does not exist`);
    return c.json({ id: accepted.id, seq: receipt.seq, status: receipt.status }, 201);
  });

  app.get('/v1/rooms/:room/messages', async (c) => {
    const room = roomParam(c);
    await mayRead(c, room);
    const limit = intQuery(c, 'limit', 100, 1, MAX_HISTORY_PAGE);
    const json = (messages: { frame: string }[], rest: string) =>
      c.body(
        // Frames are stored as JSON text already: splice them rather than parse and re-serialise.
        `{"room":${JSON.stringify(room)},"messages":[${messages.map((m) => m.frame).join(',')}],${rest}}`,
        200,
        { 'content-type': 'application/json' },
      );
    if (c.req.query('before') !== undefined) {
      if (c.req.query('since') !== undefined)
        throw new ValidationError('since, before: one or the other, not both', 'before');
      // `before=` with no value (or `latest`): the latest page, the start of a walk backwards.
      const raw = c.req.query('before');
      const before =
        raw === '' || raw === 'latest'
          ? undefined
          : intQuery(c, 'before', 0, 1, Number.MAX_SAFE_INTEGER);
      const page = await history.before(room, before, limit);
      return json(page.messages, `"next":${page.next}`);
    }
    const since = intQuery(c, 'since', 0, 0, Number.MAX_SAFE_INTEGER);
    const page = await history.since(room, since, limit);
    const truncated = page.first === undefined ? '' : `,"truncated":true,"first":${page.first}`;
    return json(page.messages, `"last":${page.last}${truncated}`);
  });

  app.get('/v1/messages/:id', async (c) => {
    const id = c.req.param('id');
    const room = c.req.query('room');
    if (!room)
      throw new ValidationError(
        'room: query parameter required (the room the message was sent to)',
        'room',
      );
    if (!RoomId.safeParse(room).success)
      throw new ValidationError('room: not a valid room id', 'room');
    await mayRead(c, room);
    const status = await history.status(room, id);
    if (!status)
      throw new NotFoundError(`message ${id} is unknown in room ${room}, or not committed yet`);
    return c.json({
      id,
      room,
      seq: Number(status.seq),
      status: status.status,
      committedAt: Number(status.committedAt),
      recipients: Number(status.recipients ?? 0),
      ...channelStatus(status),
    });
  });

  app.get('/v1/cluster', async (c) => {
    admin(c);
    const state = await cluster.state();
    return c.json(deps.operator ? { ...state, leases: await deps.operator.partitions() } : state);
  });

  // Any client may ask (it needs its token anyway to open the WebSocket it is sent to).
  app.get('/v1/connect', async (c) => {
    const node = await cluster.leastLoaded();
    if (!node) throw new UnavailableError('no live relay node; retry shortly');
    return c.json({ url: node.wsUrl, node: node.id, connections: node.connections });
  });

  function mayRead(c: Context<AppEnv>, room: string) {
    return assertMayRead(rooms, room, readerOf(c.get('principal')));
  }

  return app;
}

/**
 * Headers of an error answer: `Retry-After` (whole seconds) on 429 and 503; `Connection:
 * close` on 413, so the rest of an oversized body is not read at all (Node would otherwise
 * go on draining it, to keep the connection, until its own patience runs out).
 */
function problemHeaders(err: unknown, status: number): Record<string, string> | undefined {
  if (err instanceof RateLimitedError)
    return { 'retry-after': String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) };
  if (err instanceof PayloadTooLargeError) return { connection: 'close' };
  return status === 503 ? { 'retry-after': '1' } : undefined;
}

/** Per-channel delivery counts of a message: each recipient counted in its current state. */
function channelStatus(hash: Record<string, string>): { channels?: Record<string, unknown> } {
  const channels: Record<string, Record<string, number>> = {};
  for (const field of Object.keys(hash)) {
    const ch = /^([a-z][a-z0-9_-]*):recipients$/.exec(field)?.[1];
    if (!ch) continue;
    const count = (state: string) => Number(hash[`${ch}:${state}`] ?? 0);
    channels[ch] = {
      recipients: count('recipients'),
      queued: count('queued'),
      sent: count('sent'),
      delivered: count('delivered'),
      ...(hash[`${ch}:undelivered`] !== undefined ? { undelivered: count('undelivered') } : {}),
      failed: count('failed'),
      ...(hash[`${ch}:expired`] !== undefined ? { expired: count('expired') } : {}),
    };
  }
  return Object.keys(channels).length > 0 ? { channels } : {};
}

/** Whose publish rate a message counts against: a member's, a publish key's; not the admin's. */
function rateLimitedAs(principal: Principal): string | undefined {
  if (principal.kind === 'key') return `key:${principal.key}`;
  return principal.kind === 'admin' ? undefined : principal.member;
}

function senderFor(principal: Principal, requested: string | undefined): Sender {
  if (principal.kind === 'key') {
    if (requested !== undefined && requested !== principal.name)
      throw new ForbiddenError(`sender: this API key publishes as ${principal.name}`);
    return { kind: 'service', id: principal.name };
  }
  if (principal.kind === 'member') {
    if (requested !== undefined && requested !== principal.member) {
      throw new ForbiddenError('sender: a client may only publish as itself');
    }
    return senderOfMember(principal.member);
  }
  const as = requested ?? (principal.kind === 'dev' ? principal.member : undefined);
  if (as === undefined) return { kind: 'service', id: 'admin' };
  if (MemberId.safeParse(as).success) return senderOfMember(as);
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(as)) {
    throw new ValidationError(
      'sender: expected a member id (user:alice, phone:+1555…) or a service name',
      'sender',
    );
  }
  return { kind: 'service', id: as };
}
