import { sign } from 'hono/jwt';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { Receipts } from '../../src/delivery/receipts.ts';
import { ConflictError, ForbiddenError, NotFoundError } from '../../src/errors.ts';
import { Envelope, memberIdOf } from '../../src/funnel/envelope.ts';
import { type AppDeps, createApp, type HistoryReader } from '../../src/http/app.ts';
import { Auth } from '../../src/http/auth.ts';
import { Ingress } from '../../src/ingress/ingress.ts';
import type { Published, Publisher } from '../../src/ingress/publisher.ts';
import { createLogger } from '../../src/log.ts';
import { ClusterView } from '../../src/mesh/cluster-view.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import type { NewRoom, Room, RoomsStore } from '../../src/rooms/store.ts';

const ADMIN_TOKEN = 'admin-secret';
const JWT_SECRET = 'jwt-secret';

/** Rooms and members in memory, with the same not-found and conflict rules as RedisRoomsStore. */
class MemoryRoomsStore implements RoomsStore {
  readonly rooms = new Map<string, { room: Room; members: Set<string> }>();

  async create({ id, name, numbers = [], settings = {} }: NewRoom): Promise<Room> {
    if (this.rooms.has(id)) throw new ConflictError(`room ${id} already exists`);
    const room: Room = {
      id,
      name: name ?? id,
      numbers,
      settings,
      createdAt: Date.now(),
      seq: 0,
      members: 0,
    };
    this.rooms.set(id, { room, members: new Set() });
    return room;
  }
  async get(id: string): Promise<Room | undefined> {
    const entry = this.rooms.get(id);
    return entry && { ...entry.room, members: entry.members.size };
  }
  async list(): Promise<Room[]> {
    const ids = [...this.rooms.keys()].sort();
    return Promise.all(ids.map(async (id) => (await this.get(id)) as Room));
  }
  async delete(id: string): Promise<void> {
    if (!this.rooms.delete(id)) throw new NotFoundError(`room ${id} does not exist`);
  }
  async addMember(room: string, member: string): Promise<boolean> {
    const set = this.mustExist(room);
    const added = !set.has(member);
    set.add(member);
    return added;
  }
  async removeMember(room: string, member: string): Promise<boolean> {
    return this.mustExist(room).delete(member);
  }
  async members(room: string): Promise<string[]> {
    return [...this.mustExist(room)].sort();
  }
  async isMember(room: string, member: string): Promise<boolean> {
    return this.rooms.get(room)?.members.has(member) ?? false;
  }
  private mustExist(room: string): Set<string> {
    const entry = this.rooms.get(room);
    if (!entry) throw new NotFoundError(`room ${room} does not exist`);
    return entry.members;
  }
}

/** The Funnel's rules (publish-envelope-4.lua) over the memory store; records what it accepts. */
class RecordingPublisher implements Publisher {
  readonly envelopes: Envelope[] = [];
  constructor(private readonly store: MemoryRoomsStore) {}

  async publish(envelope: Envelope): Promise<Published> {
    if (!this.store.rooms.has(envelope.room))
      throw new NotFoundError(`room ${envelope.room} does not exist`);
    const member = memberIdOf(envelope.sender);
    if (member !== '' && !(await this.store.isMember(envelope.room, member)))
      throw new ForbiddenError(`${member} is not a member of room ${envelope.room}`);
    this.envelopes.push(envelope);
    return { entryId: `${this.envelopes.length}-0` };
  }
}

const emptyHistory: HistoryReader = {
  since: async (_room, since) => ({ messages: [], last: since }),
  before: async () => ({ messages: [], next: null }),
  status: async () => undefined,
};

/** A mesh with no live node: the view of a node that has not joined yet. */
const noCluster: AppDeps['cluster'] = {
  state: async () => ({ node: 'node-test', nodes: [], partitions: [], held: [], sources: {} }),
  leastLoaded: async () => undefined,
};

interface Harness {
  app: ReturnType<typeof createApp>;
  store: MemoryRoomsStore;
  publisher: RecordingPublisher;
  health: { isReady: boolean; isDraining: boolean };
}

/** An app over fakes, with room `garden` holding member `user:alice`, and room `empty`. */
async function harness(
  options: Partial<AppDeps['options']> = {},
  cluster: AppDeps['cluster'] = noCluster,
): Promise<Harness> {
  const store = new MemoryRoomsStore();
  await store.create({ id: 'garden' });
  await store.addMember('garden', 'user:alice');
  await store.create({ id: 'empty' });
  const publisher = new RecordingPublisher(store);
  const metrics = new Metrics();
  const receipts = new Receipts('node-test', new Keys('thr:', 64));
  const ingress = new Ingress(publisher, receipts, metrics, {
    nodeId: 'node-test',
    receiptTimeoutMs: 1000,
  });
  const health = { isReady: false, isDraining: false };
  const app = createApp({
    auth: new Auth({ adminToken: ADMIN_TOKEN, jwtSecret: JWT_SECRET, devMode: false }),
    cluster,
    rooms: store,
    ingress,
    history: emptyHistory,
    metrics,
    health: { ready: () => health.isReady, draining: () => health.isDraining },
    log: createLogger('silent'),
    options: { maxBodyBytes: 65536, maxBodyChars: 4000, ...options },
  });
  return { app, store, publisher, health };
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

function memberJwt(sub: string, secret = JWT_SECRET, exp = nowSeconds() + 3600): Promise<string> {
  return sign({ sub, exp }, secret, 'HS256');
}

const bearerHeader = (token: string) => ({ authorization: `Bearer ${token}` });
const adminHeaders = { ...bearerHeader(ADMIN_TOKEN), 'content-type': 'application/json' };

async function asMember(sub = 'user:alice'): Promise<Record<string, string>> {
  return { ...bearerHeader(await memberJwt(sub)), 'content-type': 'application/json' };
}

interface ProblemBody {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  field?: string;
}

/** Asserts an RFC 9457 problem response and returns its body. */
async function expectProblem(res: Response, status: number): Promise<ProblemBody> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = (await res.json()) as ProblemBody;
  expect(body.status).toBe(status);
  expect(typeof body.code).toBe('string');
  expect(body.code.length).toBeGreaterThan(0);
  expect(typeof body.detail).toBe('string');
  expect(body.detail.length).toBeGreaterThan(0);
  return body;
}

function publish(
  app: Harness['app'],
  headers: Record<string, string>,
  body: unknown,
  room = 'garden',
): Promise<Response> {
  return Promise.resolve(
    app.request(`/v1/rooms/${room}/messages`, {
      method: 'POST',
      headers,
      body: typeof body === 'string' ? body : JSON.stringify(body),
    }),
  );
}

describe('HTTP auth', () => {
  it('answers an admin route without a token with 401 problem+json', async () => {
    const { app } = await harness();
    const problem = await expectProblem(await app.request('/v1/rooms'), 401);
    expect(problem.code).toBe('unauthorized');
    expect(problem.title).toBe('Unauthorized');
  });

  it('lets the admin token list rooms', async () => {
    const { app } = await harness();
    const res = await app.request('/v1/rooms', { headers: bearerHeader(ADMIN_TOKEN) });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rooms: Room[] };
    expect(body.rooms.map((r) => r.id)).toEqual(['empty', 'garden']);
  });

  it('refuses an admin route to a valid member JWT with 403', async () => {
    const { app } = await harness();
    const res = await app.request('/v1/rooms', { headers: await asMember() });
    expect((await expectProblem(res, 403)).code).toBe('forbidden');
  });

  it('refuses a wrong admin token with 401', async () => {
    const { app } = await harness();
    const res = await app.request('/v1/rooms', { headers: bearerHeader('admin-secreT') });
    await expectProblem(res, 401);
  });

  it('refuses a JWT signed with another secret with 401 and publishes nothing', async () => {
    const { app, publisher } = await harness();
    const forged = await memberJwt('user:alice', 'not-the-secret');
    const res = await publish(app, bearerHeader(forged), { body: 'hi' });
    expect((await expectProblem(res, 401)).code).toBe('unauthorized');
    expect(publisher.envelopes).toEqual([]);
  });

  it('refuses an expired JWT with 401 and publishes nothing', async () => {
    const { app, publisher } = await harness();
    const expired = await memberJwt('user:alice', JWT_SECRET, nowSeconds() - 60);
    const res = await publish(app, bearerHeader(expired), { body: 'hi' });
    const problem = await expectProblem(res, 401);
    expect(problem.detail).toMatch(/expired/i);
    // The token is a credential: it must not come back in the answer (proxies log bodies).
    expect(problem.detail).not.toContain(expired.split('.')[1]);
    expect(publisher.envelopes).toEqual([]);
  });

  it('refuses a JWT whose sub is not a member id with 401', async () => {
    const { app } = await harness();
    const token = await memberJwt('alice');
    await expectProblem(await publish(app, bearerHeader(token), { body: 'hi' }), 401);
  });

  it('refuses a JWT signed with HS512 though the secret is right', async () => {
    const { app } = await harness();
    const token = await sign({ sub: 'user:alice' }, JWT_SECRET, 'HS512');
    await expectProblem(await publish(app, bearerHeader(token), { body: 'hi' }), 401);
  });

  it('takes no token from the URL outside the WebSocket route (it would end up in access logs)', async () => {
    const { app, publisher } = await harness();
    const token = await memberJwt('user:alice');
    const res = await app.request(`/v1/rooms/garden/messages?token=${token}`, {
      method: 'POST',
      body: JSON.stringify({ body: 'via query' }),
    });
    await expectProblem(res, 401);
    expect(publisher.envelopes).toEqual([]);
  });
});

describe('HTTP validation', () => {
  it('creates a room with a valid id (201)', async () => {
    const { app, store } = await harness();
    const res = await app.request('/v1/rooms', {
      method: 'POST',
      headers: adminHeaders,
      body: JSON.stringify({ id: 'new-room', name: 'New room' }),
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ id: 'new-room', name: 'New room' });
    expect(store.rooms.has('new-room')).toBe(true);
  });

  it('rejects POST /v1/rooms with a bad room id: 400 problem with field id', async () => {
    const { app, store } = await harness();
    const res = await app.request('/v1/rooms', {
      method: 'POST',
      headers: adminHeaders,
      body: JSON.stringify({ id: 'Bad Room' }),
    });
    const problem = await expectProblem(res, 400);
    expect(problem.field).toBe('id');
    expect(problem.code).toBe('invalid_request');
    expect(store.rooms.has('Bad Room')).toBe(false);
  });

  it('rejects a bad room id in the path: 400 problem with field room', async () => {
    const { app } = await harness();
    const res = await app.request('/v1/rooms/-garden', { headers: bearerHeader(ADMIN_TOKEN) });
    expect((await expectProblem(res, 400)).field).toBe('room');
  });

  it('rejects a publish to an uppercase room id in the path with field room', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember(), { body: 'hi' }, 'Garden');
    expect((await expectProblem(res, 400)).field).toBe('room');
    expect(publisher.envelopes).toEqual([]);
  });

  it('rejects malformed JSON with 400 saying so', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember(), '{"body": "hi"');
    const problem = await expectProblem(res, 400);
    expect(problem.detail).toContain('malformed JSON');
    expect(publisher.envelopes).toEqual([]);
  });

  it('rejects a body of the wrong type ({"body": 5}) with 400 naming body', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember(), { body: 5 });
    const problem = await expectProblem(res, 400);
    expect(problem.field).toBe('body');
    expect(problem.detail).toMatch(/^body: /);
    expect(publisher.envelopes).toEqual([]);
  });

  it('rejects an empty message body with 400 naming body', async () => {
    const { app } = await harness();
    expect(
      (await expectProblem(await publish(app, await asMember(), { body: '' }), 400)).field,
    ).toBe('body');
  });

  it('rejects a message longer than maxBodyChars with 400 naming body', async () => {
    const { app } = await harness({ maxBodyChars: 10 });
    const res = await publish(app, await asMember(), { body: 'x'.repeat(11) });
    expect((await expectProblem(res, 400)).field).toBe('body');
  });

  it('rejects an invalid Idempotency-Key (with a space) with 400 and publishes nothing', async () => {
    const { app, publisher } = await harness();
    const res = await publish(
      app,
      { ...(await asMember()), 'idempotency-key': 'has space' },
      { body: 'hi' },
    );
    expect((await expectProblem(res, 400)).field).toBe('Idempotency-Key');
    expect(publisher.envelopes).toEqual([]);
  });
});

describe('HTTP body size limit', () => {
  const small = { maxBodyBytes: 1024 };
  const jsonOfSize = (bytes: number) => {
    const wrapper = JSON.stringify({ body: '' }).length;
    return JSON.stringify({ body: 'x'.repeat(bytes - wrapper) });
  };

  it('accepts a 900-byte request under a 1 KB limit', async () => {
    const { app } = await harness(small);
    const res = await publish(app, await asMember(), jsonOfSize(900));
    expect(res.status).toBe(202);
  });

  it('answers a 2 KB request over a 1 KB limit with 413 problem (streamed body)', async () => {
    const { app, publisher } = await harness(small);
    const res = await publish(app, await asMember(), jsonOfSize(2048));
    expect((await expectProblem(res, 413)).code).toBe('payload_too_large');
    expect(publisher.envelopes).toEqual([]);
  });

  it('answers a 2 KB request with Content-Length over a 1 KB limit with 413 problem', async () => {
    const { app, publisher } = await harness(small);
    const body = jsonOfSize(2048);
    const headers = { ...(await asMember()), 'content-length': String(body.length) };
    const res = await publish(app, headers, body);
    expect((await expectProblem(res, 413)).code).toBe('payload_too_large');
    expect(publisher.envelopes).toEqual([]);
  });

  it('answers a 2 MB request over a 1 KB limit with 413 problem', async () => {
    const { app, publisher } = await harness(small);
    const res = await publish(app, await asMember(), jsonOfSize(2 * 1024 * 1024));
    const problem = await expectProblem(res, 413);
    expect(problem.detail).toContain('1024');
    expect(publisher.envelopes).toEqual([]);
  });

  it('answers a 2 MB room creation over a 1 KB limit with 413 problem', async () => {
    const { app } = await harness(small);
    const res = await app.request('/v1/rooms', {
      method: 'POST',
      headers: adminHeaders,
      body: JSON.stringify({ id: 'big', name: 'x'.repeat(2 * 1024 * 1024) }),
    });
    await expectProblem(res, 413);
  });
});

describe('HTTP publish', () => {
  it('accepts a member publish with 202 and an id built from the Idempotency-Key', async () => {
    const { app, publisher } = await harness();
    const res = await publish(
      app,
      { ...(await asMember()), 'idempotency-key': 'key-123' },
      { body: 'hello garden' },
    );
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id: 'http:garden:user:alice:key-123', status: 'accepted' });
    expect(publisher.envelopes).toHaveLength(1);
    const envelope = publisher.envelopes[0];
    expect(envelope).toMatchObject({
      v: 1,
      id: 'http:garden:user:alice:key-123',
      room: 'garden',
      sender: { kind: 'user', id: 'alice' },
      kind: 'chat',
      source: 'http',
      body: 'hello garden',
      origin: { node: 'node-test' },
    });
    // What ingress puts in the funnel is a valid v1 envelope for the partition consumer.
    expect(Envelope.safeParse(envelope).success).toBe(true);
  });

  it('gives the same id to a retried publish with the same Idempotency-Key', async () => {
    const { app } = await harness();
    const headers = { ...(await asMember()), 'idempotency-key': 'retry-1' };
    const first = (await (await publish(app, headers, { body: 'a' })).json()) as { id: string };
    const second = (await (await publish(app, headers, { body: 'a' })).json()) as { id: string };
    expect(second.id).toBe(first.id);
  });

  it('scopes the Idempotency-Key to the room: the same key to two rooms is two messages', async () => {
    const { app, store } = await harness();
    await store.create({ id: 'orchard' });
    await store.addMember('orchard', 'user:alice');
    const headers = { ...(await asMember()), 'idempotency-key': 'k1' };
    const toGarden = (await (await publish(app, headers, { body: 'a' })).json()) as { id: string };
    const res = await app.request('/v1/rooms/orchard/messages', {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify({ body: 'b' }),
    });
    const toOrchard = (await res.json()) as { id: string };
    expect(toOrchard.id).not.toBe(toGarden.id);
  });

  it('makes up a ulid id when no Idempotency-Key is given', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember(), { body: 'hi' });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    expect(id).toMatch(/^http:garden:user:alice:[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(publisher.envelopes[0]?.id).toBe(id);
  });

  it('passes media URLs on to the envelope', async () => {
    const { app, publisher } = await harness();
    const media = ['https://example.com/cat.jpg'];
    const res = await publish(app, await asMember(), { body: 'look', media });
    expect(res.status).toBe(202);
    expect(publisher.envelopes[0]?.media).toEqual(media);
  });

  it('answers a publish to an unknown room with 404', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember(), { body: 'hi' }, 'nowhere');
    expect((await expectProblem(res, 404)).code).toBe('not_found');
    expect(publisher.envelopes).toEqual([]);
  });

  it('answers a publish by a non-member with 403', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember('user:bob'), { body: 'hi' });
    const problem = await expectProblem(res, 403);
    expect(problem.detail).toContain('user:bob');
    expect(publisher.envelopes).toEqual([]);
  });

  it('refuses a member that sets sender to someone else with 403', async () => {
    const { app, publisher, store } = await harness();
    await store.addMember('garden', 'user:bob');
    const res = await publish(app, await asMember(), { body: 'hi', sender: 'user:bob' });
    expect((await expectProblem(res, 403)).code).toBe('forbidden');
    expect(publisher.envelopes).toEqual([]);
  });

  it('lets a member name itself as sender', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, await asMember(), { body: 'hi', sender: 'user:alice' });
    expect(res.status).toBe(202);
    expect(publisher.envelopes[0]?.sender).toEqual({ kind: 'user', id: 'alice' });
  });

  it('publishes as the admin service with the admin token, as a notification', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, adminHeaders, { body: 'maintenance at 5' }, 'empty');
    expect(res.status).toBe(202);
    expect(publisher.envelopes[0]).toMatchObject({
      room: 'empty',
      sender: { kind: 'service', id: 'admin' },
      kind: 'notification',
    });
  });

  it('lets the admin token publish as a member of the room', async () => {
    const { app, publisher } = await harness();
    const res = await publish(app, adminHeaders, { body: 'hi', sender: 'user:alice' });
    expect(res.status).toBe(202);
    expect(publisher.envelopes[0]).toMatchObject({
      sender: { kind: 'user', id: 'alice' },
      kind: 'chat',
    });
  });

  it('refuses an unknown field in the publish body with 400', async () => {
    const { app, publisher } = await harness();
    await expectProblem(await publish(app, await asMember(), { body: 'hi', colour: 'red' }), 400);
    expect(publisher.envelopes).toEqual([]);
  });
});

describe('HTTP operations routes', () => {
  it('answers an unknown route with a 404 problem', async () => {
    const { app } = await harness();
    const problem = await expectProblem(await app.request('/no/such/route'), 404);
    expect(problem.code).toBe('not_found');
    expect(problem.detail).toContain('/no/such/route');
  });

  it('answers an unknown /v1 route with a 404 problem for an authenticated caller', async () => {
    const { app } = await harness();
    const res = await app.request('/v1/nope', { headers: bearerHeader(ADMIN_TOKEN) });
    await expectProblem(res, 404);
  });

  it('answers 503 for the cluster view while Redis is unavailable', async () => {
    // Nothing listens on port 1; no retry, no offline queue: every command fails at once.
    const redis = new Redis({
      port: 1,
      lazyConnect: true,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    redis.on('error', () => {});
    const mesh = { view: { live: ['node-test'], owners: [] }, ownedPartitions: [] };
    const view = new ClusterView(redis, new Keys('thr:', 64), 'node-test', mesh);
    const { app } = await harness({}, view);
    try {
      await expectProblem(
        await app.request('/v1/cluster', { headers: bearerHeader(ADMIN_TOKEN) }),
        503,
      );
    } finally {
      redis.disconnect();
    }
  });

  it('shows the cluster view to the admin token only (403 for a member)', async () => {
    const { app } = await harness();
    const res = await app.request('/v1/cluster', { headers: bearerHeader(ADMIN_TOKEN) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ node: 'node-test', nodes: [] });
    await expectProblem(await app.request('/v1/cluster', { headers: await asMember() }), 403);
  });

  it('answers /v1/connect with a 503 problem while no node is live, and 401 without a token', async () => {
    const { app } = await harness();
    const problem = await expectProblem(
      await app.request('/v1/connect', { headers: await asMember() }),
      503,
    );
    expect(problem.detail).toContain('no live relay node');
    await expectProblem(await app.request('/v1/connect'), 401);
  });

  it('answers /healthz with 200', async () => {
    const { app } = await harness();
    const res = await app.request('/healthz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz with a 503 problem and Retry-After before the node is ready', async () => {
    const { app } = await harness();
    const res = await app.request('/readyz');
    const problem = await expectProblem(res, 503);
    expect(problem.code).toBe('unavailable');
    expect(res.headers.get('retry-after')).toBe('1');
  });

  it('answers /readyz with 200 once the node is ready', async () => {
    const { app, health } = await harness();
    health.isReady = true;
    const res = await app.request('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready' });
  });

  it('answers /readyz and /v1 routes with 503 while draining', async () => {
    const { app, health } = await harness();
    health.isReady = true;
    health.isDraining = true;
    const ready = await app.request('/readyz');
    await expectProblem(ready, 503);
    expect(ready.headers.get('retry-after')).toBe('1');
    const res = await app.request('/v1/rooms', { headers: bearerHeader(ADMIN_TOKEN) });
    await expectProblem(res, 503);
    // Keep-alive clients drop the connection, so the node's own close need not wait for them.
    expect(res.headers.get('connection')).toBe('close');
    expect((await app.request('/healthz')).headers.get('connection')).toBe('close');
  });

  it('serves Prometheus text with Threshold and default process metrics', async () => {
    const { app } = await harness();
    const res = await app.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('threshold_ingress_total');
    expect(text).toContain('process_cpu_user_seconds_total');
  });

  it('counts an accepted publish in threshold_ingress_total by source', async () => {
    const { app } = await harness();
    expect((await publish(app, await asMember(), { body: 'hi' })).status).toBe(202);
    const text = await (await app.request('/metrics')).text();
    expect(text).toMatch(/^threshold_ingress_total\{source="http"\} 1$/m);
  });

  it('counts a refused publish in threshold_ingress_rejected_total by reason', async () => {
    const { app } = await harness();
    await publish(app, await asMember('user:bob'), { body: 'hi' });
    const text = await (await app.request('/metrics')).text();
    expect(text).toMatch(
      /^threshold_ingress_rejected_total\{source="http",reason="forbidden"\} 1$/m,
    );
    expect(text).not.toMatch(/^threshold_ingress_total\{/m);
  });
});

describe('HTTP CORS', () => {
  const APP = 'https://app.example.com';
  const preflight = (origin: string, method = 'POST') => ({
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': method,
      'access-control-request-headers': 'authorization,content-type,idempotency-key',
    },
  });

  it('answers an allowed origin’s preflight 204 without a token, with the methods, headers and max age', async () => {
    const { app } = await harness({ allowedOrigins: ['HTTPS://App.example.com/'] });
    const res = await app.request('/v1/rooms/garden/messages', preflight(APP));
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(res.headers.get('access-control-allow-methods')?.split(',')).toEqual(
      expect.arrayContaining(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
    );
    expect(res.headers.get('access-control-allow-headers')).toBe(
      'authorization,content-type,idempotency-key',
    );
    expect(res.headers.get('access-control-max-age')).toBe('600');
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    expect(res.headers.get('vary')).toContain('Origin');
  });

  it('marks an allowed origin’s answers, errors included, and exposes Retry-After', async () => {
    const { app } = await harness({ allowedOrigins: [APP] });
    const ok = await publish(app, { ...(await asMember()), origin: APP }, { body: 'hi' });
    expect(ok.status).toBe(202);
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    expect(ok.headers.get('vary')).toContain('Origin');
    expect(ok.headers.get('access-control-expose-headers')).toBe('retry-after');

    const refused = await publish(app, { origin: APP, 'content-type': 'application/json' }, {});
    await expectProblem(refused, 401);
    expect(refused.headers.get('access-control-allow-origin')).toBe(APP);
    expect(refused.headers.get('vary')).toContain('Origin');
  });

  it('gives another origin no CORS headers, and its preflight 403 naming the setting', async () => {
    const { app, publisher } = await harness({ allowedOrigins: [APP] });
    const res = await app.request('/v1/rooms/garden/messages', preflight('https://evil.example'));
    const problem = await expectProblem(res, 403);
    expect(problem.detail).toContain('http.allowedOrigins');
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-methods')).toBeNull();

    const get = await app.request('/v1/connect', {
      headers: { ...(await asMember()), origin: 'https://evil.example' },
    });
    expect(get.headers.get('access-control-allow-origin')).toBeNull();
    expect(get.headers.get('access-control-expose-headers')).toBeNull();
    expect(get.headers.get('vary')).toContain('Origin');
    expect(publisher.envelopes).toHaveLength(0);
  });

  it('answers any origin with * (and never credentials) when the setting is * or empty', async () => {
    for (const allowedOrigins of [['*'], []]) {
      const { app } = await harness({ allowedOrigins });
      const pre = await app.request('/v1/connect', preflight('http://localhost:5173', 'GET'));
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('*');
      expect(pre.headers.get('access-control-allow-credentials')).toBeNull();
      const res = await publish(
        app,
        { ...(await asMember()), origin: 'http://localhost:5173' },
        { body: 'hi' },
      );
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
    }
  });

  it('adds nothing to a request without Origin, and has no CORS at all without the option', async () => {
    const { app } = await harness({ allowedOrigins: [APP] });
    const res = await app.request('/healthz');
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    const none = await harness();
    const pre = await none.app.request('/v1/rooms/garden/messages', preflight(APP));
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    // What CORS registered before the credentials check avoids: a preflight asked for a token.
    expect(pre.status).toBe(401);
  });
});
