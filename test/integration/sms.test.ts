import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { connect } from '../helpers/ws-client.ts';
import { metric, phone, startSmsNode, textsTo, useStandin } from '../twilio/sms-node.ts';
import { TOO_MANY_REQUESTS, UNSUBSCRIBED } from '../twilio/standin.ts';

const standin = useStandin();

interface History {
  messages: { body: string; sender: unknown; media?: string[] }[];
}
const json = async <T>(res: Response | Promise<Response>) => (await (await res).json()) as T;

describe('SMS rooms over Twilio', () => {
  it("a member's text reaches every other member from the room's number, the sender gets a receipt and no echo", async () => {
    const node = await startSmsNode(standin(), 'sms-relay');
    const [room, ann, bob, cat] = [phone(), phone(), phone(), phone()];
    await node.smsRoom(
      'garden',
      room,
      [`phone:${ann}`, `phone:${bob}`, `phone:${cat}`, 'user:dee'],
      {
        name: 'Garden club',
      },
    );

    const res = await node.text(ann, room, 'Seedlings are in!', {
      media: ['https://media.example.test/seedlings.jpg'],
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/xml/);
    expect(await res.text()).toMatch(/<Response\/>/);

    const texts = await standin().waitFor('the receipt to the sender', (t) =>
      textsTo(t, ann).some((m) => m.body.startsWith('Sent to')),
    );
    for (const member of [bob, cat]) {
      expect(textsTo(texts, member)).toEqual([
        expect.objectContaining({
          from: room,
          body: `${ann}: Seedlings are in!`,
          mediaUrls: ['https://media.example.test/seedlings.jpg'],
        }),
      ]);
    }
    // Three recipients: bob, cat and dee (on WebSocket); ann gets her receipt, not her text.
    expect(textsTo(texts, ann)).toEqual([
      expect.objectContaining({ from: room, body: 'Sent to Garden club (3)' }),
    ]);
    const history = await json<History>(node.admin('GET', '/v1/rooms/garden/messages?since=0'));
    expect(history.messages).toEqual([
      expect.objectContaining({
        sender: { kind: 'phone', id: ann },
        body: 'Seedlings are in!',
        media: ['https://media.example.test/seedlings.jpg'],
      }),
    ]);
    expect(metric(await node.metrics(), 'threshold_sms_inbound_total{outcome="relayed"}')).toBe(1);
  });

  it('a replayed MessageSid sends nothing again; a bad or missing signature gets 403; a stranger is discarded and counted', async () => {
    const node = await startSmsNode(standin(), 'sms-refused');
    const [room, ann, bob, stranger] = [phone(), phone(), phone(), phone()];
    await node.smsRoom('plot', room, [`phone:${ann}`, `phone:${bob}`]);

    const sid = 'SM00000000000000000000000000000001';
    expect((await node.text(ann, room, 'once', { sid })).status).toBe(200);
    expect((await node.text(ann, room, 'once', { sid })).status).toBe(200);

    const forged = await node.text(ann, room, 'forged', {
      signature: 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=',
    });
    expect(forged.status).toBe(403);
    expect(forged.headers.get('content-type')).toBe('application/problem+json');
    expect(await forged.json()).toMatchObject({ status: 403, code: 'forbidden' });
    const unsigned = await node.text(ann, room, 'unsigned', { signature: null });
    expect(unsigned.status).toBe(403);
    expect((await node.text(stranger, room, 'let me in')).status).toBe(200);

    // One in flight at a time, in outbox order: once the last text is out, so is anything before it.
    expect((await node.text(ann, room, 'sentinel')).status).toBe(200);
    const texts = await standin().waitFor('the sentinel', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('sentinel')),
    );
    expect(textsTo(texts, bob).map((m) => m.body)).toEqual([`${ann}: once`, `${ann}: sentinel`]);
    expect(textsTo(texts, stranger)).toEqual([]);

    const metrics = await node.metrics();
    expect(metric(metrics, 'threshold_sms_inbound_total{outcome="duplicate"}')).toBe(1);
    expect(metric(metrics, 'threshold_sms_inbound_total{outcome="bad_signature"}')).toBe(2);
    expect(metric(metrics, 'threshold_messages_discarded_total{reason="not_member"}')).toBe(1);
    const history = await json<History>(node.admin('GET', '/v1/rooms/plot/messages?since=0'));
    expect(history.messages.map((m: { body: string }) => m.body)).toEqual(['once', 'sentinel']);
  });

  it('keywords: CONFIRM OFF/ON, STOP/START (any opt-out word), JOIN an open room, HELP', async () => {
    const node = await startSmsNode(standin(), 'sms-keywords');
    const [room, closed, ann, bob, newcomer] = [phone(), phone(), phone(), phone(), phone()];
    await node.smsRoom('open', room, [`phone:${ann}`, `phone:${bob}`], {
      name: 'Open house',
      settings: { open: true },
    });
    await node.smsRoom('closed', closed, [`phone:${ann}`], { name: 'Board' });
    const s = standin();
    const replyTo = async (who: string, what: RegExp) =>
      (
        await s.waitFor(`a reply to ${who} matching ${what}`, (t) =>
          textsTo(t, who).some((m) => what.test(m.body)),
        )
      )
        .filter((m) => m.to === who && what.test(m.body))
        .at(-1);

    // CONFIRM OFF: the next text is relayed, but no receipt.
    await node.text(ann, room, 'confirm off');
    expect(await replyTo(ann, /^Confirmations off/)).toMatchObject({ from: room });
    await node.text(ann, room, 'quiet one');
    await node.text(ann, room, 'CONFIRM ON');
    await replyTo(ann, /^Confirmations on/);
    await node.text(ann, room, 'loud one');
    await replyTo(ann, /^Sent to Open house/);
    expect(textsTo(s.messages(), ann).filter((m) => m.body.startsWith('Sent to'))).toHaveLength(1);
    // Ann's receipt and Bob's copy leave the same number side by side: either may land first.
    await replyTo(bob, /: loud one$/);
    expect(textsTo(s.messages(), bob).map((m) => m.body)).toEqual([
      `${ann}: quiet one`,
      `${ann}: loud one`,
    ]);

    // STOP (here "unsubscribe"): bob gets nothing more until START, and no answer from us
    // (Twilio answers STOP itself, and would refuse a text to him with 21610).
    await node.text(bob, room, 'unsubscribe');
    await eventually(
      'the opt-out counted',
      () => node.metrics(),
      (m) => metric(m, 'threshold_sms_inbound_total{outcome="opt_out"}') === 1,
    );
    await node.text(ann, room, 'while bob is away');
    // bob is still a member, just not texted: the receipt counts only those it reaches.
    await replyTo(ann, /^Sent to Open house \(0\)/);
    await node.text(bob, room, 'START');
    await replyTo(bob, /back on/);
    expect(textsTo(s.messages(), bob).map((m) => m.body)).toEqual([
      `${ann}: quiet one`,
      `${ann}: loud one`,
      'Texts from Open house are back on. Text HELP for help.',
    ]);
    await node.text(ann, room, 'bob is back');
    await s.waitFor('bob gets texts again', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('bob is back')),
    );
    expect(textsTo(s.messages(), bob).some((m) => m.body.endsWith('while bob is away'))).toBe(
      false,
    );

    // JOIN: an open room takes a newcomer, whose texts are then relayed; a closed one does not.
    await node.text(newcomer, room, 'join');
    expect(await replyTo(newcomer, /^Welcome to Open house/)).toMatchObject({ from: room });
    await node.text(newcomer, closed, 'JOIN');
    await replyTo(newcomer, /invite-only/);
    const members = await json<{ members: string[] }>(node.admin('GET', '/v1/rooms/open/members'));
    expect(members.members).toContain(`phone:${newcomer}`);
    expect(
      (await json<{ members: string[] }>(node.admin('GET', '/v1/rooms/closed/members'))).members,
    ).not.toContain(`phone:${newcomer}`);
    await node.text(newcomer, room, 'hi all');
    await s.waitFor('the newcomer reaches ann', (t) =>
      textsTo(t, ann).some((m) => m.body === `${newcomer}: hi all`),
    );

    // HELP, and a keyword with a bad argument, answer with the keywords; ROOMS lists rooms.
    await node.text(bob, room, 'help');
    expect((await replyTo(bob, /JOIN, LEAVE, ROOMS/))?.body).toMatch(/^Open house: /);
    await node.text(bob, room, 'CONFIRM MAYBE');
    await s.waitFor(
      'a second HELP',
      (t) => textsTo(t, bob).filter((m) => /JOIN, LEAVE/.test(m.body)).length === 2,
    );
    await node.text(ann, room, 'rooms');
    expect((await replyTo(ann, /^Your rooms/))?.body).toBe(
      `Your rooms: Board ${closed}, Open house ${room}`,
    );

    // LEAVE: no longer a member, so the next text is discarded.
    await node.text(newcomer, room, 'LEAVE');
    await replyTo(newcomer, /^You left Open house/);
    expect(metric(await node.metrics(), 'threshold_sms_inbound_total{outcome="keyword"}')).toBe(9);
  });

  it('status callbacks mark the message delivered in GET /v1/messages/:id, and a late one never moves it back', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-status');
    const [room, ann, bob, cat] = [phone(), phone(), phone(), phone()];
    await node.smsRoom('porch', room, [`phone:${ann}`, `phone:${bob}`, `phone:${cat}`]);
    s.autoStatus(node.deliverTo);

    const sid = 'SM00000000000000000000000000000002';
    await node.text(ann, room, 'status please', { sid });
    const status = () => node.status(sid, 'porch');
    const delivered = await eventually(
      'both recipients delivered',
      status,
      (b) => b.channels?.sms?.delivered === 2,
    );
    expect(delivered).toMatchObject({
      id: `twilio:${sid}`,
      room: 'porch',
      status: 'committed',
      recipients: 2,
      channels: { sms: { recipients: 2, queued: 0, sent: 0, delivered: 2, failed: 0 } },
    });

    // The callback URL is the public one (THRESHOLD_PUBLIC_URL), and the signature covers it.
    const [toBob] = textsTo(s.messages(), bob);
    expect(toBob?.statusCallback).toMatch(
      /^https:\/\/relay\.example\.test\/thr\/twilio\/status\?d=/,
    );
    // Late and out of order: "sent" after "delivered", then a "failed"; a final state stays.
    expect(await s.sendStatus(toBob!, 'sent', node.deliverTo)).toBe(204);
    expect(await s.sendStatus(toBob!, 'failed', node.deliverTo, 30003)).toBe(204);
    expect((await status()).channels?.sms).toMatchObject({ delivered: 2, sent: 0, failed: 0 });
    expect(
      metric(await node.metrics(), 'threshold_sms_status_total{status="sent",result="stale"}'),
    ).toBe(1);

    // A callback signed for another URL is refused.
    const res = await fetch(node.deliverTo(toBob!.statusCallback!), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'x-twilio-signature': 'bm9wZQ==',
      },
      body: new URLSearchParams({ MessageSid: toBob!.sid, MessageStatus: 'failed' }).toString(),
    });
    expect(res.status).toBe(403);
  });

  it('without THRESHOLD_PUBLIC_URL no status callback is asked for, and GET /v1/messages/:id shows the recipients sent', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-no-callbacks', {}, '');
    const [room, ann, bob, cat] = [phone(), phone(), phone(), phone()];
    await node.smsRoom('stoop', room, [`phone:${ann}`, `phone:${bob}`, `phone:${cat}`]);

    const sid = 'SM00000000000000000000000000000003';
    expect((await node.text(ann, room, 'no callbacks', { sid })).status).toBe(200);
    const texts = await s.waitFor('both relays', (t) =>
      [bob, cat].every((who) => textsTo(t, who).length === 1),
    );
    expect(textsTo(texts, bob)[0]?.statusCallback).toBeUndefined();
    const status = await eventually(
      'both recipients sent',
      () => node.status(sid, 'stoop'),
      (b) => b.channels?.sms?.sent === 2,
    );
    expect(status.channels?.sms).toMatchObject({ recipients: 2, queued: 0, sent: 2 });
  });

  it('a 429 from Twilio is retried until delivered; a 21610 is not retried and that member gets nothing more', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-retry');
    const [room, ann, bob, cat] = [phone(), phone(), phone(), phone()];
    await node.smsRoom('shed', room, [`phone:${ann}`, `phone:${bob}`, `phone:${cat}`]);
    await node.admin('PUT', `/v1/rooms/shed/members/user:dee`);

    s.failFor(cat, UNSUBSCRIBED);
    s.failNext(3, TOO_MANY_REQUESTS);
    await node.text(ann, room, 'storm');
    await s.waitFor('bob gets it through the 429s', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('storm')),
    );
    await s.waitFor('the receipt', (t) =>
      textsTo(t, ann).some((m) => m.body.startsWith('Sent to')),
    );
    const retried = metric(
      await node.metrics(),
      'threshold_outbox_jobs_total{channel="sms",outcome="retried",code="20429"}',
    );
    expect(retried).toBe(3);
    await eventually(
      'the 21610 counted',
      () => node.metrics(),
      (m) =>
        metric(m, 'threshold_outbox_jobs_total{channel="sms",outcome="failed",code="21610"}') === 1,
    );
    // A 429 may have hit cat's first try too; the 21610 itself is tried once, never again.
    const tries = s.attempts(cat);

    await node.text(ann, room, 'after');
    await s.waitFor('bob gets the next one', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('after')),
    );
    await s.waitFor(
      'its receipt',
      (t) => textsTo(t, ann).filter((m) => m.body.startsWith('Sent to')).length === 2,
    );
    expect(s.attempts(cat)).toBe(tries);
    expect(textsTo(s.messages(), cat)).toEqual([]);
  });

  it('a failing Twilio is tried maxAttempts times, then the text is dead-lettered and marked failed', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-dead', { maxAttempts: 2 });
    const [room, ann, bob] = [phone(), phone(), phone()];
    await node.smsRoom('barn', room, [`phone:${ann}`, `phone:${bob}`]);
    s.failFor(bob, { status: 503, code: 20503, message: 'Service Unavailable' });
    const sid = 'SM00000000000000000000000000000003';
    await node.text(ann, room, 'doomed', { sid });
    const status = await eventually(
      'bob marked failed',
      () => node.status(sid, 'barn'),
      (b) => b.channels?.sms?.failed === 1,
    );
    expect(status.channels?.sms).toMatchObject({ recipients: 1, failed: 1, queued: 0 });
    expect(s.attempts(bob)).toBe(2);
    const metrics = await node.metrics();
    expect(metric(metrics, 'threshold_dead_letters_total{reason="sms_attempts"}')).toBe(1);
    expect(
      metric(metrics, 'threshold_outbox_jobs_total{channel="sms",outcome="dead",code="20503"}'),
    ).toBe(1);
  });

  it('WebSocket and SMS members of one room see each other, and a room with numbers takes at most 1600 characters', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-mixed');
    const [room, ann] = [phone(), phone()];
    await node.smsRoom('mixed', room, [`phone:${ann}`, 'user:dee']);

    const dee = await connect(node.wsUrl, await node.token('user:dee'));
    dee.send({ type: 'subscribe', room: 'mixed' });
    expect(await dee.next()).toMatchObject({ type: 'subscribed', room: 'mixed' });

    await node.text(ann, room, 'from my phone');
    expect(await dee.next((f) => f.type === 'message')).toMatchObject({
      room: 'mixed',
      sender: { kind: 'phone', id: ann },
      body: 'from my phone',
    });

    dee.send({ type: 'publish', room: 'mixed', body: 'from my app', id: 'c1' });
    expect(await dee.next((f) => f.type === 'ack')).toMatchObject({ id: 'c1', seq: 2 });
    await s.waitFor('ann gets dee’s message', (t) =>
      textsTo(t, ann).some((m) => m.body === 'dee: from my app' && m.from === room),
    );
    await dee.close();

    // Phones get "mixed: <body>" (a service signs with the room's name): 1600 in all, never cut.
    const long = await node.admin('POST', '/v1/rooms/mixed/messages', { body: 'x'.repeat(1594) });
    expect(long.status).toBe(400);
    expect(await long.json()).toMatchObject({
      code: 'invalid_request',
      field: 'body',
      detail: expect.stringMatching(/at most 1600 characters/),
    });
    const fromDee = await node.admin('POST', '/v1/rooms/mixed/messages', {
      body: 'y'.repeat(1596),
      sender: 'user:dee',
    });
    expect(fromDee.status).toBe(400);
    expect((await fromDee.json()) as { detail: string }).toMatchObject({
      detail: expect.stringMatching(/at most 1595 characters from dee/),
    });
    expect(
      (await node.admin('POST', '/v1/rooms/mixed/messages', { body: 'x'.repeat(1593) })).status,
    ).toBe(202);
    const notice = await s.waitFor('the 1600-character notice, whole', (t) =>
      textsTo(t, ann).some((m) => m.body.startsWith('mixed: x')),
    );
    const body = textsTo(notice, ann).find((m) => m.body.startsWith('mixed: x'))?.body ?? '';
    expect(body).toBe(`mixed: ${'x'.repeat(1593)}`);

    // A phone member's text that would not fit is refused with an answer saying how long it may be.
    await node.text(ann, room, 'z'.repeat(1590));
    const refusal = await s.waitFor('the too-long answer', (t) =>
      textsTo(t, ann).some((m) => m.body.startsWith('Not sent')),
    );
    expect(textsTo(refusal, ann).find((m) => m.body.startsWith('Not sent'))?.body).toBe(
      `Not sent: texts to mixed take at most ${1600 - ann.length - 2} characters from you; yours had 1590.`,
    );
  });
});
