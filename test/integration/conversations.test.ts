import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { useTestNode, type TestNode } from '../helpers/node.ts';
import { connect, type Frame } from '../helpers/ws-client.ts';

interface Listed {
  id: string;
  name: string;
  seq: number;
  readSeq: number;
  unread: number;
  lastMessage: { seq: number; body: string; sender: unknown; ts: number } | null;
}

/** A request with a member's token (JSON body when given). */
async function as(node: TestNode, member: string, method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${await node.token(member)}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${node.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function myRooms(node: TestNode, member: string, query = '') {
  const res = await as(node, member, 'GET', `/v1/me/rooms${query}`);
  expect(res.status).toBe(200);
  return (await res.json()) as { rooms: Listed[]; next: string | null };
}

async function say(node: TestNode, member: string, room: string, body: string) {
  const res = await as(node, member, 'POST', `/v1/rooms/${room}/messages?wait=1`, { body });
  expect(res.status).toBe(201);
  return ((await res.json()) as { seq: number }).seq;
}

async function start(node: TestNode, member: string, body: object) {
  const res = await as(node, member, 'POST', '/v1/rooms', body);
  expect(res.status, await res.clone().text()).toBe(201);
  return (await res.json()) as { id: string; members: number; seq: number };
}

describe('conversations', () => {
  const node = useTestNode({
    name: 'conversations',
    overrides: { rateLimit: { publishPerSecond: 1000, publishBurst: 1000 } },
  });

  it('a member starts a room with a first message: both list it, Bob has 1 unread, Alice none', async () => {
    const n = node();
    const room = await start(n, 'user:alice', {
      members: ['user:bob'],
      name: 'Picnic',
      body: 'Saturday?',
    });
    expect(room).toMatchObject({ name: 'Picnic', members: 2, seq: 1 });
    expect(room.id).toMatch(/^c-[0-9a-z]{26}$/);

    const bob = (await myRooms(n, 'user:bob')).rooms.find((r) => r.id === room.id);
    expect(bob).toMatchObject({ name: 'Picnic', seq: 1, readSeq: 0, unread: 1 });
    expect(bob?.lastMessage).toMatchObject({
      seq: 1,
      body: 'Saturday?',
      sender: { kind: 'user', id: 'alice' },
    });
    const alice = (await myRooms(n, 'user:alice')).rooms.find((r) => r.id === room.id);
    expect(alice).toMatchObject({ seq: 1, readSeq: 1, unread: 0 });
  });

  it("read markers: only forward, never past the room's seq; Bob's socket hears Alice's", async () => {
    const n = node();
    const { id } = await start(n, 'user:alice', { members: ['user:bob'], body: 'one' });
    const ws = await connect(n.wsUrl, await n.token('user:bob'));
    ws.send({ type: 'subscribe', room: id });
    await ws.next((f) => f.type === 'subscribed');
    for (let i = 2; i <= 6; i++) await say(n, 'user:alice', id, `message ${i}`);

    const read = await as(n, 'user:bob', 'PUT', `/v1/rooms/${id}/read`, { seq: 4 });
    expect(await read.json()).toEqual({ room: id, member: 'user:bob', seq: 4 });
    expect((await myRooms(n, 'user:bob')).rooms.find((r) => r.id === id)).toMatchObject({
      seq: 6,
      readSeq: 4,
      unread: 2,
    });
    // Backwards: the marker stays.
    const back = await as(n, 'user:bob', 'PUT', `/v1/rooms/${id}/read`, { seq: 2 });
    expect(await back.json()).toMatchObject({ seq: 4 });
    // Past the room's seq: up to it.
    const past = await as(n, 'user:bob', 'PUT', `/v1/rooms/${id}/read`, { seq: 99 });
    expect(await past.json()).toMatchObject({ seq: 6 });

    // Publishing moved Bob's own marker to his message; Alice reads it over her socket, and
    // Bob's subscribed socket gets her marker.
    expect(await say(n, 'user:bob', id, 'seen them')).toBe(7);
    const alice = await connect(n.wsUrl, await n.token('user:alice'));
    alice.send({ type: 'read', room: id, seq: 7 });
    expect(await ws.next((f) => f.type === 'read' && f.member === 'user:alice')).toEqual({
      type: 'read',
      room: id,
      member: 'user:alice',
      seq: 7,
    });
    const reads = await as(n, 'user:bob', 'GET', `/v1/rooms/${id}/reads`);
    expect(await reads.json()).toEqual({ room: id, reads: { 'user:alice': 7, 'user:bob': 7 } });
  });

  it('lists by recency: newer activity first, and limit=1 with next walks every room once', async () => {
    const n = node();
    const first = await start(n, 'user:cy', { members: ['user:dee'], body: 'older' });
    const second = await start(n, 'user:cy', { members: ['user:eve'], body: 'newer' });
    let listed = (await myRooms(n, 'user:cy')).rooms.map((r) => r.id);
    expect(listed).toEqual([second.id, first.id]);

    // A new message moves its room to the top.
    await new Promise((r) => setTimeout(r, 5));
    await say(n, 'user:cy', first.id, 'bump');
    listed = (await myRooms(n, 'user:cy')).rooms.map((r) => r.id);
    expect(listed).toEqual([first.id, second.id]);

    const walked: string[] = [];
    let page = await myRooms(n, 'user:cy', '?limit=1');
    walked.push(...page.rooms.map((r) => r.id));
    while (page.next) {
      page = await myRooms(n, 'user:cy', `?limit=1&after=${encodeURIComponent(page.next)}`);
      walked.push(...page.rooms.map((r) => r.id));
    }
    expect(walked).toEqual([first.id, second.id]);
    const bad = await as(n, 'user:cy', 'GET', '/v1/me/rooms?after=nonsense');
    expect(bad.status).toBe(400);
  });

  it('pages backwards through 250 messages with before=: ascending pages, no gap or repeat', async () => {
    const n = node();
    const { id } = await start(n, 'user:fay', { members: ['user:gus'] });
    const sends = Array.from({ length: 250 }, (_, i) =>
      as(n, 'user:fay', 'POST', `/v1/rooms/${id}/messages`, { body: `m${i + 1}` }),
    );
    for (const res of await Promise.all(sends)) expect(res.status).toBe(202);
    await eventually(
      'all 250 committed',
      async () => (await myRooms(n, 'user:gus')).rooms.find((r) => r.id === id)?.seq,
      (seq) => seq === 250,
    );

    const seen: number[] = [];
    let before: number | null | undefined;
    do {
      // `before=` with no value: the latest page.
      const query = `?limit=40&before=${before ?? ''}`;
      const res = await as(n, 'user:gus', 'GET', `/v1/rooms/${id}/messages${query}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { messages: { seq: number }[]; next: number | null };
      const seqs = page.messages.map((m) => m.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      seen.unshift(...seqs);
      before = page.next;
    } while (before !== null);
    expect(seen).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
  });

  it('a new socket starts with welcome (unread counts); rooms:"mine" brings rooms created later', async () => {
    const n = node();
    const early = await start(n, 'user:hal', { members: ['user:ivy'], body: 'hi Ivy' });
    const ws = await connect(n.wsUrl, await n.token('user:ivy'));
    const welcome = await ws.welcome;
    expect(welcome).toMatchObject({ type: 'welcome', member: 'user:ivy' });
    expect(welcome.rooms).toContainEqual({ id: early.id, seq: 1, readSeq: 0, unread: 1 });

    ws.send({ type: 'subscribe', rooms: 'mine' });
    await ws.next((f) => f.type === 'subscribed' && f.room === early.id);
    const later = await start(n, 'user:hal', { members: ['user:ivy'], body: 'a new room' });
    await ws.next((f) => f.type === 'subscribed' && f.room === later.id);
    const first = await ws.next((f) => f.type === 'message' && f.room === later.id);
    expect(first).toMatchObject({ seq: 1, body: 'a new room' });
    await say(n, 'user:hal', later.id, 'and more');
    expect(await ws.next((f: Frame) => f.type === 'message' && f.room === later.id)).toMatchObject({
      seq: 2,
      body: 'and more',
    });
    // Removed from it: the subscription ends.
    expect((await n.admin('DELETE', `/v1/rooms/${later.id}/members/user:ivy`)).status).toBe(204);
    await ws.next((f) => f.type === 'unsubscribed' && f.room === later.id);
  });

  it("a non-member gets 403 on every one of these routes for someone else's room", async () => {
    const n = node();
    const { id } = await start(n, 'user:jo', { members: ['user:kim'], body: 'private' });
    const outsider = 'user:mallory';
    for (const [method, path, body] of [
      ['GET', `/v1/rooms/${id}/messages?before=2`],
      ['GET', `/v1/rooms/${id}/messages?since=0`],
      ['PUT', `/v1/rooms/${id}/read`, { seq: 1 }],
      ['GET', `/v1/rooms/${id}/reads`],
    ] as const) {
      const res = await as(n, outsider, method, path, body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
    }
    expect((await myRooms(n, outsider)).rooms.map((r) => r.id)).not.toContain(id);
    const ws = await connect(n.wsUrl, await n.token(outsider));
    ws.send({ type: 'read', room: id, seq: 1 });
    expect(await ws.next((f) => f.type === 'error')).toMatchObject({ code: 'forbidden', room: id });
  });

  it('limits: rooms.maxCreatedMembers (400); admins create rooms as before', async () => {
    const n = node();
    const members = Array.from({ length: 100 }, (_, i) => `user:m${i}`);
    const res = await as(n, 'user:lee', 'POST', '/v1/rooms', { members });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'invalid_request' });
    const admin = await n.admin('POST', '/v1/rooms', { id: 'admin-made' });
    expect(admin.status).toBe(201);
  });
});

describe('conversation limits', () => {
  const closed = useTestNode({
    name: 'members-may-not',
    overrides: { rooms: { membersMayCreate: false } },
  });
  const slow = useTestNode({ name: 'create-rate', overrides: { rooms: { createPerHour: 2 } } });

  it('rooms.membersMayCreate=false: a member gets 403, the admin still creates', async () => {
    const res = await as(closed(), 'user:ann', 'POST', '/v1/rooms', { members: ['user:bo'] });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'forbidden' });
    expect((await closed().admin('POST', '/v1/rooms', { id: 'by-admin' })).status).toBe(201);
  });

  it('rooms.createPerHour: over it, 429 with Retry-After', async () => {
    for (let i = 0; i < 2; i++)
      expect(
        (await as(slow(), 'user:ann', 'POST', '/v1/rooms', { members: ['user:bo'] })).status,
      ).toBe(201);
    const over = await as(slow(), 'user:ann', 'POST', '/v1/rooms', { members: ['user:bo'] });
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(60);
    // Another member is not held up.
    expect(
      (await as(slow(), 'user:bo', 'POST', '/v1/rooms', { members: ['user:ann'] })).status,
    ).toBe(201);
  });
});
