import { describe, expect, it, onTestFinished } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { receiver } from '../helpers/http-receiver.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { connect } from '../helpers/ws-client.ts';
import { startPushStandin, subscribePush } from '../push/standin.ts';

/**
 * Notifications end to end on one node: over a member's WebSocket when they are online (and
 * nothing else once they answer `received`), through push when they are not, through their
 * fallback when they never answer; cancelled, expired, and counted as the receivers saw it.
 */

const SUBJECT = 'mailto:ops@example.test';

interface Status {
  status: string;
  priority: string;
  expansion: number;
  counts: Record<'queued' | 'sent' | 'delivered' | 'failed' | 'expired', number>;
  percent: Record<string, number>;
}

async function setup(notifications: Record<string, unknown> = {}) {
  const node = await startTestNode({
    name: 'notifications',
    overrides: {
      notifications: { tickMs: 50, fallbackAfterMs: 800, ...notifications },
      push: { subject: SUBJECT },
    },
  });
  const push = await startPushStandin({ subject: SUBJECT });
  onTestFinished(() => push.close());
  return { node, push };
}

async function send(node: TestNode, body: Record<string, unknown>) {
  const res = await node.admin('POST', '/v1/notifications', body);
  expect(res.status, await res.clone().text()).toBe(202);
  return (await res.json()) as { id: string; status: string };
}

const status = async (node: TestNode, id: string) =>
  (await (await node.admin('GET', `/v1/notifications/${id}`)).json()) as Status;

const settled = (node: TestNode, id: string, done: (s: Status) => boolean) =>
  eventually(`notification ${id}`, () => status(node, id), done, 10_000);

/** A webhook endpoint the member is linked to (their second fallback). */
async function linkWebhook(node: TestNode, member: string, name: string) {
  const hook = await receiver(() => 200);
  expect((await node.admin('PUT', `/v1/webhooks/${name}`, { url: hook.url })).status).toBe(201);
  const linked = await node.admin('PUT', `/v1/members/${member}/links`, { webhook: name });
  expect(linked.status, await linked.clone().text()).toBe(200);
  return hook;
}

describe('notifications', () => {
  it('an online member gets it over WebSocket and nothing else; an offline one through push; one who never answers gets the fallback after the delay', async () => {
    const { node, push } = await setup();
    const answers = await connect(node.wsUrl, await node.token('user:ann'));
    await answers.welcome;
    const silent = await connect(node.wsUrl, await node.token('user:sam'));
    await silent.welcome;
    const annHook = await linkWebhook(node, 'user:ann', 'ann-hook');
    const samHook = await linkWebhook(node, 'user:sam', 'sam-hook');
    const offline = push.subscribe();
    await subscribePush(node, 'user:bob', offline);

    const { id, status: queued } = await send(node, {
      to: { members: ['user:ann', 'user:bob', 'user:sam'] },
      body: 'The kettle is on',
      data: { kind: 'kettle' },
      priority: 'high',
      channels: ['webhook'],
    });
    expect(queued).toBe('queued');

    const frame = await answers.next((f) => f.type === 'notification');
    expect(frame).toEqual({
      type: 'notification',
      id,
      body: 'The kettle is on',
      data: { kind: 'kettle' },
      priority: 'high',
      sender: 'admin',
      ts: expect.any(Number),
    });
    answers.send({ type: 'received', id });
    const sentAt = Date.now();
    // Sam's socket got it too, and he never answers: his webhook gets it after the delay.
    await silent.next((f) => f.type === 'notification' && f.id === id);
    await eventually(
      'sam-hook',
      async () => samHook.requests.length,
      (n) => n === 1,
      5000,
    );
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(700);
    expect(JSON.parse(samHook.requests[0]?.body ?? '{}')).toMatchObject({
      id,
      kind: 'notification',
      body: 'The kettle is on',
    });
    // Bob has no socket: the channels list names only webhook, and Bob has no webhook.
    const done = await settled(node, id, (s) => s.counts.queued === 0);
    expect(done).toMatchObject({
      status: 'done',
      expansion: 3,
      // Ann answered; Sam's webhook took it (a 2xx: delivered); Bob had no way.
      counts: { queued: 0, delivered: 2, sent: 0, failed: 1, expired: 0 },
    });
    expect(annHook.requests).toHaveLength(0);
    expect(push.received).toHaveLength(0);

    // The default fallback starts with push: Bob's browser gets it, decrypted by the stand-in.
    const second = await send(node, { to: { members: ['user:bob'] }, body: 'Dinner at 8' });
    await eventually(
      'push',
      async () => push.received.length,
      (n) => n === 1,
    );
    expect(push.received[0]).toMatchObject({
      endpoint: offline.endpoint,
      payload: { type: 'notification', id: second.id, body: 'Dinner at 8' },
    });
    expect(await settled(node, second.id, (s) => s.counts.queued === 0)).toMatchObject({
      expansion: 1,
      counts: { sent: 1, failed: 0 },
      percent: { sent: 100 },
    });
    await answers.close();
    await silent.close();
  });

  it('status counts what the receivers got: expansion, counts and percentages over members, rooms and channels', async () => {
    const { node, push } = await setup();
    await node.createRoom('ops', ['user:ann', 'user:bob', 'phone:+12015550142']);
    const ann = await connect(node.wsUrl, await node.token('user:ann'));
    await ann.welcome;
    await subscribePush(node, 'user:bob', push.subscribe());
    const { id } = await send(node, {
      to: { rooms: ['ops'], members: ['user:ann', 'user:nobody'] },
      body: 'Deploy at noon',
    });
    const frame = await ann.next((f) => f.type === 'notification');
    ann.send({ type: 'received', id: frame.id as string });
    const done = await settled(node, id, (s) => s.counts.queued === 0);
    // ann live and answered; bob by push; the phone member by text; nobody has no way.
    expect(done).toMatchObject({
      expansion: 4,
      counts: { delivered: 1, sent: 2, failed: 1, expired: 0 },
      percent: { delivered: 25, sent: 50, failed: 25, expired: 0 },
    });
    expect(push.received.map((r) => r.payload.id)).toEqual([id]);
    const outbox = (await (await node.admin('GET', '/v1/dev/outbox')).json()) as {
      texts: { to: string; body: string }[];
    };
    expect(outbox.texts.filter((t) => t.to === '+12015550142').map((t) => t.body)).toEqual([
      'Deploy at noon',
    ]);
    await ann.close();
  });

  it('a tag expression reaches exactly its members: staff - interns, and a & (b + c)', async () => {
    const { node } = await setup({ pageSize: 2 });
    const phone = (n: number) => `phone:+1201555${String(n).padStart(4, '0')}`;
    const tag = async (name: string, numbers: number[]) => {
      const res = await node.admin('POST', `/v1/tags/${name}/members`, { add: numbers.map(phone) });
      expect(res.status).toBe(200);
    };
    await tag('staff', [1, 2, 3, 4, 5]);
    await tag('interns', [2, 4, 9]);
    await tag('a', [1, 2, 3, 6]);
    await tag('b', [2, 7]);
    await tag('c', [3, 6, 8]);
    const texted = async (body: string) => {
      const { texts } = (await (await node.admin('GET', '/v1/dev/outbox')).json()) as {
        texts: { to: string; body: string }[];
      };
      return texts
        .filter((t) => t.body === body)
        .map((t) => `phone:${t.to}`)
        .sort();
    };
    for (const [tags, expected] of [
      ['staff - interns', [1, 3, 5]],
      ['a & (b + c)', [2, 3, 6]],
    ] as const) {
      const { id } = await send(node, { to: { tags }, body: tags });
      const done = await settled(node, id, (s) => s.counts.queued === 0 && s.status === 'done');
      expect(done).toMatchObject({ expansion: expected.length, counts: { sent: expected.length } });
      expect(await texted(tags)).toEqual(expected.map(phone));
    }
  });

  it('a scheduled notification cancelled before its time is never sent; after dispatch, cancel is 409', async () => {
    const { node } = await setup();
    const hook = await linkWebhook(node, 'user:ann', 'ann-hook');
    const sendAt = Date.now() + 3000;
    const { id, status: scheduled } = await send(node, {
      to: { members: ['user:ann'] },
      body: 'never',
      sendAt: new Date(sendAt).toISOString(),
      channels: ['webhook'],
    });
    expect(scheduled).toBe('scheduled');
    await new Promise((r) => setTimeout(r, 1000));
    expect((await node.admin('DELETE', `/v1/notifications/${id}`)).status).toBe(204);
    expect((await node.admin('DELETE', `/v1/notifications/${id}`)).status).toBe(204);
    const patched = await node.admin('PATCH', `/v1/notifications/${id}`, { priority: 'high' });
    expect(patched.status).toBe(409);
    await new Promise((r) => setTimeout(r, sendAt + 1000 - Date.now()));
    expect(hook.requests).toHaveLength(0);
    expect(await status(node, id)).toMatchObject({ status: 'cancelled', expansion: 0 });

    const now = await send(node, {
      to: { members: ['user:ann'] },
      body: 'now',
      channels: ['webhook'],
    });
    await settled(node, now.id, (s) => s.status === 'done');
    const late = await node.admin('DELETE', `/v1/notifications/${now.id}`);
    expect(late.status).toBe(409);
    expect(await late.json()).toMatchObject({ code: 'too_late' });
  });

  it('priority: a scheduled one is re-prioritised; high overtakes normal and low waiting in the same queue', async () => {
    const { node } = await setup();
    // Ann's webhook takes its first request slowly: everything after it waits in her lane.
    let arrived = 0;
    const hook = await receiver(async () => {
      if (++arrived === 1) await new Promise((r) => setTimeout(r, 1500));
      return 200;
    });
    expect((await node.admin('PUT', '/v1/webhooks/ann-hook', { url: hook.url })).status).toBe(201);
    await node.admin('PUT', '/v1/members/user:ann/links', { webhook: 'ann-hook' });
    const to = { members: ['user:ann'] };
    await send(node, { to, body: 'blocker', channels: ['webhook'] });
    await eventually(
      'the blocker in flight',
      async () => arrived,
      (n) => n === 1,
    );
    const sendAt = new Date(Date.now() + 300).toISOString();
    for (const [i, priority] of (['low', 'normal', 'low', 'normal'] as const).entries())
      await send(node, { to, body: `${priority}-${i}`, sendAt, priority, channels: ['webhook'] });
    const urgent = await send(node, {
      to,
      body: 'urgent',
      sendAt,
      priority: 'low',
      channels: ['webhook'],
    });
    const patched = await node.admin('PATCH', `/v1/notifications/${urgent.id}`, {
      priority: 'high',
    });
    expect(patched.status).toBe(200);
    expect(await patched.json()).toMatchObject({ status: 'scheduled', priority: 'high' });
    await eventually(
      'all six',
      async () => hook.requests.length,
      (n) => n === 6,
      10_000,
    );
    const order = hook.requests.map((r) => (JSON.parse(r.body) as { body: string }).body);
    // Of one priority, the order is the outbox's (they come from different partitions).
    const [blocker, next, ...rest] = order;
    expect([blocker, next]).toEqual(['blocker', 'urgent']);
    expect([rest.slice(0, 2).sort(), rest.slice(2).sort()]).toEqual([
      ['normal-1', 'normal-3'],
      ['low-0', 'low-2'],
    ]);
  });

  it('an expired notification is not delivered and counts as expired', async () => {
    const { node } = await setup({ fallbackAfterMs: 1500 });
    const hook = await linkWebhook(node, 'user:sam', 'sam-hook');
    const sam = await connect(node.wsUrl, await node.token('user:sam'));
    await sam.welcome;
    // Sam is online but never answers; it expires before his fallback would start.
    const { id } = await send(node, {
      to: { members: ['user:sam'] },
      body: 'flash sale',
      ttlSeconds: 1,
      channels: ['webhook'],
    });
    await sam.next((f) => f.type === 'notification' && f.id === id);
    const done = await settled(node, id, (s) => s.counts.queued === 0);
    expect(done).toMatchObject({ expansion: 1, counts: { expired: 1, sent: 0, delivered: 0 } });
    expect(hook.requests).toHaveLength(0);
    // An answer after it expired changes nothing.
    sam.send({ type: 'received', id });
    await new Promise((r) => setTimeout(r, 300));
    expect((await status(node, id)).counts).toMatchObject({ expired: 1, delivered: 0 });
    await sam.close();
  });

  it('refuses bad notifications with a clear 400, members with 403, and takes a key with the notify scope', async () => {
    const { node } = await setup();
    const bad = async (body: unknown) => {
      const res = await node.admin('POST', '/v1/notifications', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      return ((await res.json()) as { detail: string }).detail;
    };
    expect(await bad({ to: {}, body: 'x' })).toMatch(/^to: expected members, rooms or tags/);
    expect(await bad({ to: { members: ['ann'] }, body: 'x' })).toMatch(/^to\.members\.0:/);
    expect(await bad({ to: { members: ['user:ann'] }, body: '' })).toMatch(/^body:/);
    expect(await bad({ to: { members: ['user:ann'] }, body: 'x', priority: 'urgent' })).toMatch(
      /^priority:/,
    );
    expect(
      await bad({
        to: { members: ['user:ann'] },
        body: 'x',
        ttlSeconds: 5,
        expiresAt: Date.now() + 9000,
      }),
    ).toContain('one or the other');
    expect(
      await bad({ to: { members: ['user:ann'] }, body: 'x', expiresAt: Date.now() - 1000 }),
    ).toMatch(/^expiresAt: must be after sendAt/);
    expect(await bad({ to: { members: ['user:ann'] }, body: 'x', channels: ['fax'] })).toMatch(
      /^channels\.0:/,
    );
    expect(await bad({ to: { tags: 'staff - (' }, body: 'x' })).toMatch(/^to\.tags: at column 10/);
    expect(await bad({ to: { tags: 'nosuchtag' }, body: 'x' })).toBe(
      'to.tags: unknown tag "nosuchtag"',
    );
    expect((await node.admin('GET', '/v1/notifications/nope')).status).toBe(400);
    expect((await node.admin('GET', '/v1/members/webhook:x/links')).status).toBe(400);
    const links = await node.admin('PUT', '/v1/members/user:ann/links', { phone: '555' });
    expect(((await links.json()) as { detail: string }).detail).toMatch(
      /^phone: expected an E\.164/,
    );
    expect((await node.admin('GET', `/v1/notifications/${'0'.repeat(26)}`)).status).toBe(404);

    const member = await fetch(`${node.url}/v1/notifications`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${await node.token('user:ann')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ to: { members: ['user:bob'] }, body: 'x' }),
    });
    expect(member.status).toBe(403);
    const made = await node.admin('POST', '/v1/keys', { name: 'alerts', scopes: ['notify'] });
    const { key } = (await made.json()) as { key: string };
    const byKey = await fetch(`${node.url}/v1/notifications`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to: { members: ['user:bob'] }, body: 'from a key' }),
    });
    expect(byKey.status).toBe(202);
  });
});
