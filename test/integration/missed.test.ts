import { describe, expect, it, onTestFinished } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { receiver } from '../helpers/http-receiver.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { connect } from '../helpers/ws-client.ts';
import { startPushStandin, subscribePush } from '../push/standin.ts';

/**
 * Room messages members miss while offline (their `missed` setting): pushed, or sent to
 * their linked webhook or phone, in order, and never to a member who is online or did not
 * ask; a room's deliverWithinSeconds expires what is not delivered in time.
 */

const SUBJECT = 'mailto:ops@example.test';

interface Status {
  recipients: number;
  committedAt?: number;
  channels?: Record<string, Record<string, number>>;
}

const messageStatus = async (node: TestNode, id: string, room: string) =>
  (await (await node.admin('GET', `/v1/messages/${id}?room=${room}`)).json()) as Status;

async function setup() {
  const node = await startTestNode({
    name: 'missed',
    overrides: {
      push: { subject: SUBJECT },
      outbox: { backoffBaseMs: 50, backoffMaxMs: 200, maxAttempts: 50 },
    },
  });
  const push = await startPushStandin({ subject: SUBJECT });
  onTestFinished(() => push.close());
  return { node, push };
}

/** The member's own `PUT /v1/members/:member/settings`, with their token. */
async function setMissed(node: TestNode, member: string, missed: string) {
  const res = await fetch(`${node.url}/v1/members/${member}/settings`, {
    method: 'PUT',
    headers: {
      authorization: `Bearer ${await node.token(member)}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ missed }),
  });
  expect(res.status, await res.clone().text()).toBe(200);
  expect(await res.json()).toEqual({ member, missed });
}

async function publish(node: TestNode, room: string, body: string): Promise<string> {
  const res = await node.admin('POST', `/v1/rooms/${room}/messages?wait=1`, {
    body,
    sender: 'user:ann',
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

describe('missed room messages', () => {
  it('an offline member who opted in gets them by push, in order; an online one and one who did not ask get nothing out of band', async () => {
    const { node, push } = await setup();
    const bobPhone = push.subscribe();
    const carlPhone = push.subscribe();
    const danPhone = push.subscribe();
    for (const [m, b] of [
      ['user:bob', bobPhone],
      ['user:carl', carlPhone],
      ['user:dan', danPhone],
    ] as const)
      await subscribePush(node, m, b);
    await node.createRoom('crew', ['user:ann', 'user:bob', 'user:carl']);
    await setMissed(node, 'user:bob', 'push');
    await setMissed(node, 'user:carl', 'push,webhook');
    // Dan opts in before joining: the room learns it when he joins.
    await setMissed(node, 'user:dan', 'push');
    expect((await node.admin('PUT', '/v1/rooms/crew/members/user:dan')).status).toBe(201);
    // The sender opted in too: her own messages never come back to her.
    await setMissed(node, 'user:ann', 'push');
    // Carl is online: he gets the messages live, so nothing else.
    const carl = await connect(node.wsUrl, await node.token('user:carl'));
    await carl.welcome;
    await eventually(
      'carl online',
      async () =>
        (
          (await (await node.admin('GET', '/v1/rooms/crew/presence')).json()) as {
            online: string[];
          }
        ).online,
      (o) => o.includes('user:carl'),
    );
    // Dan turns it off again: he gets nothing out of band.
    await setMissed(node, 'user:dan', 'off');
    expect(
      await (
        await fetch(`${node.url}/v1/members/user:dan/settings`, {
          headers: { authorization: `Bearer ${await node.token('user:dan')}` },
        })
      ).json(),
    ).toEqual({ member: 'user:dan', missed: 'off' });

    const ids: string[] = [];
    for (const body of ['one', 'two', 'three', 'four', 'five'])
      ids.push(await publish(node, 'crew', body));
    await eventually(
      'pushed to bob',
      async () => push.received.length,
      (n) => n >= 5,
      10_000,
    );
    expect(push.received.map((r) => r.endpoint)).toEqual(Array(5).fill(bobPhone.endpoint));
    expect(push.received.map((r) => r.payload.body)).toEqual([
      'one',
      'two',
      'three',
      'four',
      'five',
    ]);
    expect(push.received[0]?.payload).toMatchObject({ id: ids[0], room: 'crew' });
    const status = await eventually(
      'receipt',
      () => messageStatus(node, ids[4] as string, 'crew'),
      (s) => s.channels?.push?.sent === 1,
    );
    expect(status.channels).toEqual({
      push: { recipients: 1, queued: 0, sent: 1, delivered: 0, failed: 0 },
    });
    // Nothing else arrives later (Carl's, Dan's or Ann's).
    await new Promise((r) => setTimeout(r, 500));
    expect(push.received).toHaveLength(5);
    for (const b of [carlPhone, danPhone]) expect(push.attempts(b.endpoint)).toBe(0);
    await carl.close();

    // Bob leaves: the room's later messages are not his. Carl, offline now, gets them.
    expect((await node.admin('DELETE', '/v1/rooms/crew/members/user:bob')).status).toBe(204);
    await publish(node, 'crew', 'six');
    await eventually(
      'pushed to carl',
      async () => push.received.filter((r) => r.endpoint === carlPhone.endpoint),
      (r) => r.length === 1,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(push.received.filter((r) => r.endpoint === bobPhone.endpoint)).toHaveLength(5);
    expect(push.received.at(-1)?.payload.body).toBe('six');
  });

  it('without a push subscription the message goes to the linked webhook, then the phone; without the setting nowhere', async () => {
    const { node } = await setup();
    const hook = await receiver(() => 200);
    expect((await node.admin('PUT', '/v1/webhooks/eve-hook', { url: hook.url })).status).toBe(201);
    await node.admin('PUT', '/v1/members/user:eve/links', { webhook: 'eve-hook' });
    await node.admin('PUT', '/v1/members/user:fay/links', { phone: '+12015550177' });
    await node.admin('PUT', '/v1/members/user:gus/links', { phone: '+12015550178' });
    await node.createRoom('den', ['user:ann', 'user:eve', 'user:fay', 'user:gus']);
    await setMissed(node, 'user:eve', 'push,webhook,sms');
    // The admin may set it too.
    const byAdmin = await node.admin('PUT', '/v1/members/user:fay/settings', {
      missed: 'push,sms',
    });
    expect(await byAdmin.json()).toEqual({ member: 'user:fay', missed: 'push,sms' });
    // Someone else may not.
    const other = await fetch(`${node.url}/v1/members/user:fay/settings`, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${await node.token('user:eve')}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ missed: 'off' }),
    });
    expect(other.status).toBe(403);
    const bad = await node.admin('PUT', '/v1/members/user:fay/settings', { missed: 'pigeon' });
    expect(bad.status).toBe(400);

    const ids = [await publish(node, 'den', 'lunch?'), await publish(node, 'den', 'at noon')];
    await eventually(
      'webhook',
      async () => hook.requests.length,
      (n) => n === 2,
      10_000,
    );
    expect(hook.requests.map((r) => JSON.parse(r.body).body)).toEqual(['lunch?', 'at noon']);
    const texts = await eventually(
      'texted',
      async () =>
        (
          (await (await node.admin('GET', '/v1/dev/outbox')).json()) as {
            texts: { to: string; body: string }[];
          }
        ).texts,
      (t) => t.filter((x) => x.to === '+12015550177').length === 2,
    );
    expect(texts.filter((t) => t.to === '+12015550177').map((t) => t.body)).toEqual([
      '[den] ann: lunch?',
      '[den] ann: at noon',
    ]);
    // Gus never asked.
    expect(texts.filter((t) => t.to === '+12015550178')).toEqual([]);
    const status = await eventually(
      'receipt',
      () => messageStatus(node, ids[0] as string, 'den'),
      (s) => s.channels?.webhook?.delivered === 1 && s.channels?.sms?.queued === 0,
    );
    // Push was tried for both (no subscription: failed), then each one's next way.
    expect(status.channels).toMatchObject({
      push: { recipients: 2, failed: 2 },
      webhook: { recipients: 1, delivered: 1 },
      sms: { recipients: 1, queued: 0 },
    });
    // Each way once: nothing more comes.
    await new Promise((r) => setTimeout(r, 500));
    expect(hook.requests).toHaveLength(2);
  });

  it("a room's deliverWithinSeconds: a webhook that answers 503 past it never gets the message, which counts as expired", async () => {
    const { node } = await setup();
    let until = Number.POSITIVE_INFINITY;
    const hook = await receiver(() => (Date.now() < until ? 503 : 200));
    expect((await node.admin('PUT', '/v1/webhooks/slow', { url: hook.url })).status).toBe(201);
    const created = await node.admin('POST', '/v1/rooms', {
      id: 'brief',
      settings: { deliverWithinSeconds: 1 },
    });
    expect(created.status, await created.clone().text()).toBe(201);
    expect((await node.admin('PUT', '/v1/rooms/brief/members/webhook:slow')).status).toBe(201);
    const res = await node.admin('POST', '/v1/rooms/brief/messages?wait=1', {
      body: 'now or never',
    });
    const { id } = (await res.json()) as { id: string };
    // 503 until half a second past the deadline, counted from the commit: a commit that took
    // long on a loaded machine must not move the deadline past the webhook's recovery.
    until = Number((await messageStatus(node, id, 'brief')).committedAt) + 1500;
    expect(until).toBeGreaterThan(1500);
    const status = await eventually(
      'expired',
      () => messageStatus(node, id, 'brief'),
      (s) => s.channels?.webhook?.expired === 1,
      10_000,
    );
    expect(status.channels?.webhook).toMatchObject({ recipients: 1, queued: 0, delivered: 0 });
    expect(hook.requests.length).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now()) + 700));
    expect(hook.requests.every((r) => r.status === 503)).toBe(true);
  });
});
