import { describe, expect, it, onTestFinished } from 'vitest';
import { signUp, testPhone } from '../helpers/accounts.ts';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { tempDir } from '../helpers/readme.ts';
import { connect, type Frame, type TestClient } from '../helpers/ws-client.ts';

type Invite = { id: string; state: string; room: string | null; [field: string]: unknown };

/** A request with a bearer token; an object body goes as JSON. */
async function call(node: TestNode, method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(`${node.url}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    body: (text ? JSON.parse(text) : undefined) as Record<string, unknown>,
  };
}

const list = async (node: TestNode, token: string, role: 'received' | 'sent') => {
  const res = await call(node, 'GET', `/v1/invites?role=${role}`, token);
  expect(res.status).toBe(200);
  return (res.body.invites as Invite[]).map((i) => i.id);
};

const inviteFrame = (event: string, id: string) => (f: Frame) =>
  f.type === 'invite' && f.event === event && (f.invite as Invite).id === id;

/** No `invite` frame at all reaches the client within `ms`. */
async function noInviteFrame(client: TestClient, ms = 300) {
  await new Promise((r) => setTimeout(r, ms));
  expect(client.frames.filter((f) => f.type === 'invite')).toEqual([]);
}

describe.each([
  { db: 'embedded PGlite', postgres: false },
  { db: 'the machine’s Postgres', postgres: true },
])('invites and connections on $db', ({ postgres }) => {
  async function node(invites: Record<string, unknown> = {}) {
    const dataDir = await tempDir('invites');
    const overrides: Record<string, unknown> = { dataDir, invites };
    if (postgres) {
      const db = await createTestDatabase();
      onTestFinished(() => db.drop());
      overrides.databaseUrl = db.url;
    }
    return startTestNode({ name: 'invites', overrides });
  }

  it('invite → accept gives both users a shared room, in both GET /v1/me/rooms, and a message in it reaches the other', async () => {
    const n = await node();
    const adaPhone = testPhone();
    const ada = await signUp(n, adaPhone, { first: 'Ada', last: 'Lovelace' });
    const bobPhone = testPhone();
    const bob = await signUp(n, bobPhone, { first: 'Bob' });
    const adaWs = await connect(n.wsUrl, ada.token);
    const bobWs = await connect(n.wsUrl, bob.token);
    await Promise.all([adaWs.welcome, bobWs.welcome]);

    const sent = await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone, first: 'Bob' });
    expect(sent.status).toBe(201);
    expect(sent.body).toMatchObject({ state: 'pending', inviter: ada.member, invitee: bob.member });
    const id = sent.body.id as string;
    const received = await bobWs.next(inviteFrame('received', id));
    expect(received.invite).toMatchObject({ inviter: ada.member, inviterName: 'Ada Lovelace' });
    expect(received.invite).not.toHaveProperty('phone');

    // The same invite again: the pending one, no second event.
    const again = await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone });
    expect(again).toMatchObject({ status: 200, body: { id, state: 'pending' } });
    expect(await list(n, bob.token, 'received')).toEqual([id]);
    expect(await list(n, ada.token, 'sent')).toEqual([id]);

    const accepted = await call(n, 'POST', `/v1/invites/${id}/accept`, bob.token);
    expect(accepted).toMatchObject({
      status: 200,
      body: { id, state: 'accepted', room: `c-${id}` },
    });
    const room = accepted.body.room as string;
    expect((await adaWs.next(inviteFrame('accepted', id))).invite).toMatchObject({ room });
    // Accepting again changes nothing.
    expect((await call(n, 'POST', `/v1/invites/${id}/accept`, bob.token)).body).toMatchObject({
      state: 'accepted',
      room,
    });

    for (const [who, peer] of [
      [ada, bob],
      [bob, ada],
    ] as const) {
      const rooms = await call(n, 'GET', '/v1/me/rooms', who.token);
      expect((rooms.body.rooms as { id: string }[]).map((r) => r.id)).toContain(room);
      const connections = await call(n, 'GET', '/v1/me/connections', who.token);
      expect(connections.body.connections).toEqual([
        { member: peer.member, room, since: expect.any(Number) },
      ]);
    }
    // Accepted invites leave both lists: they are connections now.
    expect(await list(n, bob.token, 'received')).toEqual([]);
    expect(await list(n, ada.token, 'sent')).toEqual([]);
    const twice = await call(n, 'POST', '/v1/invites', bob.token, { phone: adaPhone });
    expect(twice).toMatchObject({ status: 409, body: { code: 'already_connected' } });

    bobWs.send({ type: 'subscribe', room });
    await bobWs.next((f) => f.type === 'subscribed');
    adaWs.send({ type: 'publish', room, body: 'hello, connection', id: 'm1' });
    expect(await adaWs.next((f) => f.type === 'ack' || f.type === 'error')).toMatchObject({
      type: 'ack',
    });
    expect(await bobWs.next((f) => f.type === 'message')).toMatchObject({
      room,
      body: 'hello, connection',
      sender: { kind: 'user', id: ada.member.slice('user:'.length) },
    });
  });

  it('reject → the inviter sees rejected (live and in role=sent) and acks it away', async () => {
    const n = await node();
    const ada = await signUp(n, testPhone());
    const bobPhone = testPhone();
    const bob = await signUp(n, bobPhone);
    const adaWs = await connect(n.wsUrl, ada.token);
    await adaWs.welcome;
    const { body } = await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone });
    const id = body.id as string;

    // Only the invitee rejects, only the inviter acks a rejection.
    expect((await call(n, 'POST', `/v1/invites/${id}/reject`, ada.token)).status).toBe(403);
    expect((await call(n, 'POST', `/v1/invites/${id}/ack`, ada.token)).status).toBe(409);
    const rejected = await call(n, 'POST', `/v1/invites/${id}/reject`, bob.token);
    expect(rejected).toMatchObject({ status: 200, body: { id, state: 'rejected' } });
    expect((await adaWs.next(inviteFrame('rejected', id))).invite).toMatchObject({
      state: 'rejected',
      cleared: false,
    });
    expect(await list(n, ada.token, 'sent')).toEqual([id]);
    expect(await list(n, bob.token, 'received')).toEqual([]);
    expect((await call(n, 'POST', `/v1/invites/${id}/accept`, bob.token)).status).toBe(409);

    const acked = await call(n, 'POST', `/v1/invites/${id}/ack`, ada.token);
    expect(acked).toMatchObject({ status: 200, body: { id, state: 'rejected', cleared: true } });
    expect(await list(n, ada.token, 'sent')).toEqual([]);
  });

  it('cancel before the invitee looked: they never see it; cancel after: they are told and ack it', async () => {
    const n = await node();
    const ada = await signUp(n, testPhone());
    const bobPhone = testPhone();
    const bob = await signUp(n, bobPhone);
    const unseen = (await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone })).body
      .id as string;
    const bobWs = await connect(n.wsUrl, bob.token);
    await bobWs.welcome;

    const cancelled = await call(n, 'DELETE', `/v1/invites/${unseen}`, ada.token);
    expect(cancelled).toMatchObject({ status: 200, body: { id: unseen, state: 'cancelled' } });
    expect(await list(n, bob.token, 'received')).toEqual([]);
    for (const [method, path] of [
      ['GET', ''],
      ['POST', '/accept'],
      ['POST', '/reject'],
      ['POST', '/ack'],
      ['DELETE', ''],
    ] as const)
      expect((await call(n, method, `/v1/invites/${unseen}${path}`, bob.token)).status).toBe(404);
    expect(await list(n, ada.token, 'sent')).toEqual([]);
    await noInviteFrame(bobWs);

    // This one Bob reads (by id) before it is cancelled.
    const seen = (await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone })).body
      .id as string;
    await bobWs.next(inviteFrame('received', seen));
    expect((await call(n, 'GET', `/v1/invites/${seen}`, bob.token)).body).toMatchObject({
      state: 'pending',
      seen: true,
    });
    expect((await call(n, 'DELETE', `/v1/invites/${seen}`, ada.token)).status).toBe(200);
    await bobWs.next(inviteFrame('cancelled', seen));
    expect(await list(n, bob.token, 'received')).toEqual([seen]);
    const acked = await call(n, 'POST', `/v1/invites/${seen}/ack`, bob.token);
    expect(acked).toMatchObject({ status: 200, body: { state: 'cancelled', cleared: true } });
    expect(await list(n, bob.token, 'received')).toEqual([]);
  });

  it('an invitee without an account gets the link by SMS, and after signing up sees and accepts the invite', async () => {
    const n = await node({ linkUrl: 'https://example.test/i/{id}' });
    const ada = await signUp(n, testPhone(), { first: 'Ada', last: 'Lovelace' });
    const phone = testPhone();
    const sent = await call(n, 'POST', '/v1/invites', ada.token, { phone, first: 'Cleo' });
    expect(sent.status).toBe(201);
    const id = sent.body.id as string;
    const texts = await eventually(
      'invite text',
      async () => {
        const res = await n.admin('GET', '/v1/dev/outbox');
        const { texts } = (await res.json()) as { texts: { to: string; body: string }[] };
        return texts.filter((t) => t.to === phone);
      },
      (t) => t.length === 1,
    );
    expect(texts[0]?.body).toBe(
      `Ada Lovelace invited you to Threshold: https://example.test/i/${id}`,
    );

    const cleo = await signUp(n, phone, { first: 'Cleo' });
    expect(cleo.member).toBe(sent.body.invitee);
    expect(await list(n, cleo.token, 'received')).toEqual([id]);
    const accepted = await call(n, 'POST', `/v1/invites/${id}/accept`, cleo.token);
    expect(accepted.body).toMatchObject({ state: 'accepted', room: `c-${id}` });
    const rooms = await call(n, 'GET', '/v1/me/rooms', cleo.token);
    expect((rooms.body.rooms as { id: string }[]).map((r) => r.id)).toEqual([`c-${id}`]);
  });

  it('the connection cap answers 409 connections_full, at invite and at accept', async () => {
    const n = await node({ maxConnections: 1 });
    const [adaPhone, bobPhone, cleoPhone] = [testPhone(), testPhone(), testPhone()];
    const ada = await signUp(n, adaPhone);
    const bob = await signUp(n, bobPhone);
    const cleo = await signUp(n, cleoPhone);
    const toBob = (await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone })).body;
    // Cleo invites Bob too, before Bob is full.
    const cleoToBob = (await call(n, 'POST', '/v1/invites', cleo.token, { phone: bobPhone })).body;
    expect((await call(n, 'POST', `/v1/invites/${toBob.id}/accept`, bob.token)).status).toBe(200);

    const full = await call(n, 'POST', '/v1/invites', ada.token, { phone: cleoPhone });
    expect(full).toMatchObject({ status: 409, body: { code: 'connections_full' } });
    expect(full.body.detail).toMatch(/is full/);
    const atAccept = await call(n, 'POST', `/v1/invites/${cleoToBob.id}/accept`, bob.token);
    expect(atAccept).toMatchObject({ status: 409, body: { code: 'connections_full' } });
    expect(await list(n, bob.token, 'received')).toEqual([cleoToBob.id]);
  });

  it('self-invite 400, their pending invite 409 naming it, admin token 403, bad input 400', async () => {
    const n = await node();
    const adaPhone = testPhone();
    const bobPhone = testPhone();
    const ada = await signUp(n, adaPhone);
    const bob = await signUp(n, bobPhone);
    const self = await call(n, 'POST', '/v1/invites', ada.token, { phone: adaPhone });
    expect(self).toMatchObject({ status: 400, body: { field: 'phone' } });

    const theirs = (await call(n, 'POST', '/v1/invites', bob.token, { phone: adaPhone })).body;
    const back = await call(n, 'POST', '/v1/invites', ada.token, { phone: bobPhone });
    expect(back).toMatchObject({ status: 409, body: { code: 'invited_you' } });
    expect(back.body.detail).toContain(theirs.id);

    const admin = await n.admin('POST', '/v1/invites', { phone: bobPhone });
    expect(admin.status).toBe(403);
    expect((await n.admin('GET', '/v1/me/connections')).status).toBe(403);
    for (const body of [
      { phone: 'not a phone' },
      { phone: bobPhone, first: '' },
      { phone: bobPhone, x: 1 },
    ])
      expect((await call(n, 'POST', '/v1/invites', ada.token, body)).status).toBe(400);
    expect((await call(n, 'GET', '/v1/invites?role=mine', ada.token)).status).toBe(400);
  });
});
