/**
 * What members notice when Twilio misbehaves, and the opt-out rules: texts the stand-in
 * receives, GET /v1/messages/:id, metrics and dead letters.
 */
import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { TwilioSmsClient } from '../../src/delivery/sms-client.ts';
import { SmsSendError } from '../../src/errors.ts';
import { connect } from '../helpers/redis.ts';
import { metric, phone, startSmsNode, textsTo, useStandin } from '../twilio/sms-node.ts';
import { TOO_MANY_REQUESTS } from '../twilio/standin.ts';

const standin = useStandin();

describe('SMS delivery', () => {
  it('a Twilio slower than sms.sendTimeoutMs that still accepts: the retry is counted as ambiguous, and the recipient gets the text at most twice', async () => {
    const s = standin();
    // The retry waits at least 1 s after the 250 ms timeout; Twilio answers the first at 500 ms.
    const node = await startSmsNode(s, 'sms-ambiguous', {
      sendTimeoutMs: 250,
      backoffBaseMs: 2000,
      backoffMaxMs: 2000,
    });
    const [room, ann, bob] = [phone(), phone(), phone()];
    await node.smsRoom('slow', room, [`phone:${ann}`, `phone:${bob}`], {
      settings: { confirmations: false },
    });
    s.delay(500);
    await node.text(ann, room, 'are you there');
    await s.waitFor('the first (timed out) text', (t) => textsTo(t, bob).length === 1);
    s.delay(0);
    await eventually(
      'the ambiguous resend counted',
      () => node.metrics(),
      (m) => metric(m, 'threshold_outbox_ambiguous_total{channel="sms"}') === 1,
    );
    await s.waitFor('the resend', (t) => textsTo(t, bob).length === 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(textsTo(s.messages(), bob)).toHaveLength(2);
    const metrics = await node.metrics();
    expect(
      metric(
        metrics,
        'threshold_outbox_jobs_total{channel="sms",outcome="retried",code="ambiguous"}',
      ),
    ).toBe(1);
  });

  it('a timed-out text whose status callback arrived before the retry is not sent again', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-reconciled', {
      sendTimeoutMs: 250,
      backoffBaseMs: 2000,
      backoffMaxMs: 2000,
    });
    const [room, ann, bob] = [phone(), phone(), phone()];
    await node.smsRoom('slow2', room, [`phone:${ann}`, `phone:${bob}`], {
      settings: { confirmations: false },
    });
    s.autoStatus(node.deliverTo);
    s.delay(500);
    const sid = 'SM0000000000000000000000000000a001';
    await node.text(ann, room, 'once only', { sid });
    await s.waitFor('the (timed out) text', (t) => textsTo(t, bob).length === 1);
    s.delay(0);
    await eventually(
      'the retry reconciled with the recorded sid',
      () => node.metrics(),
      (m) =>
        metric(m, 'threshold_outbox_jobs_total{channel="sms",outcome="reconciled",code=""}') === 1,
    );
    expect(textsTo(s.messages(), bob)).toHaveLength(1);
    const status = await node.status(sid, 'slow2');
    expect(status.channels?.sms).toMatchObject({ recipients: 1, delivered: 1, queued: 0 });
    expect(metric(await node.metrics(), 'threshold_outbox_ambiguous_total{channel="sms"}')).toBe(0);
  });

  it('21211 marks the number invalid and is not retried; 20003 (credentials) is dead-lettered with its code', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-refusals');
    const [room, ann, bob, cat, dan] = [phone(), phone(), phone(), phone(), phone()];
    await node.smsRoom('refused', room, [
      `phone:${ann}`,
      `phone:${bob}`,
      `phone:${cat}`,
      `phone:${dan}`,
    ]);
    s.failFor(bob, { status: 400, code: 21211, message: 'not a valid phone number' });
    s.failFor(cat, { status: 401, code: 20003, message: 'Authenticate' });
    const sid = 'SM0000000000000000000000000000a002';
    await node.text(ann, room, 'hello', { sid });
    const status = await eventually(
      'bob and cat marked failed',
      () => node.status(sid, 'refused'),
      (b) => b.channels?.sms?.failed === 2,
    );
    expect(status.channels?.sms).toMatchObject({ recipients: 3, failed: 2 });
    const metrics = await node.metrics();
    expect(metric(metrics, 'threshold_dead_letters_total{reason="sms_rejected"}')).toBe(1);
    expect(
      metric(metrics, 'threshold_outbox_jobs_total{channel="sms",outcome="dead",code="20003"}'),
    ).toBe(1);
    expect(
      metric(metrics, 'threshold_outbox_jobs_total{channel="sms",outcome="failed",code="21211"}'),
    ).toBe(1);
    const redis = connect(node.node.redisUrl);
    try {
      const dead = await redis.xrange(`${node.prefix}dead`, '-', '+');
      expect(dead.map(([, f]) => [f[f.indexOf('reason') + 1], f[f.indexOf('code') + 1]])).toEqual([
        ['sms_rejected', '20003'],
      ]);
    } finally {
      await redis.quit();
    }

    // bob is invalid now: the next text is not even tried for him.
    await node.text(ann, room, 'again');
    await s.waitFor('dan gets the next one', (t) =>
      textsTo(t, dan).some((m) => m.body.endsWith('again')),
    );
    expect(s.attempts(bob)).toBe(1);
  });

  it('opt-outs hold per (member, room number): STOP to A leaves B on, START to B does not re-enable A, STOP gets no answer', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-optout');
    const [numberA, numberB, ann, bob] = [phone(), phone(), phone(), phone()];
    await node.smsRoom('alpha', numberA, [`phone:${ann}`, `phone:${bob}`], { name: 'Alpha' });
    await node.smsRoom('beta', numberB, [`phone:${ann}`, `phone:${bob}`], { name: 'Beta' });

    await node.text(bob, numberA, 'STOP');
    await eventually(
      'the opt-out recorded',
      () => node.metrics(),
      (m) => metric(m, 'threshold_sms_inbound_total{outcome="opt_out"}') === 1,
    );
    await node.text(ann, numberA, 'alpha one');
    await node.text(ann, numberB, 'beta one');
    await s.waitFor('bob gets Beta', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('beta one')),
    );
    await s.waitFor('ann gets her Alpha receipt', (t) =>
      textsTo(t, ann).some((m) => m.body.startsWith('Sent to Alpha')),
    );
    await node.text(bob, numberB, 'START');
    await s.waitFor('the START answer from B', (t) =>
      textsTo(t, bob).some((m) => m.from === numberB && /back on/.test(m.body)),
    );
    await node.text(ann, numberA, 'alpha two');
    await s.waitFor(
      'ann gets her second Alpha receipt',
      (t) => textsTo(t, ann).filter((m) => m.body.startsWith('Sent to Alpha')).length === 2,
    );
    // Nothing from A reached bob: no relay, no answer to STOP.
    expect(textsTo(s.messages(), bob).filter((m) => m.from === numberA)).toEqual([]);
    // The receipts count only who was reached.
    expect(
      textsTo(s.messages(), ann)
        .filter((m) => m.body.startsWith('Sent to'))
        .map((m) => m.body),
    ).toEqual(['Sent to Alpha (0)', 'Sent to Beta (1)', 'Sent to Alpha (0)']);

    // "Yes" from a member who did not opt out is an ordinary message; START to A re-enables A.
    await node.text(bob, numberB, 'Yes');
    await s.waitFor('ann gets bob’s yes', (t) =>
      textsTo(t, ann).some((m) => m.body === `${bob}: Yes`),
    );
    await node.text(bob, numberA, 'yes');
    await s.waitFor('the opt-in answer from A', (t) =>
      textsTo(t, bob).some((m) => m.from === numberA && /back on/.test(m.body)),
    );
    await node.text(ann, numberA, 'alpha three');
    await s.waitFor('bob gets Alpha again', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('alpha three')),
    );
  });

  it('a 429 storm longer than maxAttempts × backoff is still delivered', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-storm', { maxAttempts: 2 });
    const [room, ann, bob] = [phone(), phone(), phone()];
    await node.smsRoom('storm', room, [`phone:${ann}`, `phone:${bob}`], {
      settings: { confirmations: false },
    });
    s.failNext(8, TOO_MANY_REQUESTS);
    await node.text(ann, room, 'through the storm');
    await s.waitFor('bob gets it', (t) => textsTo(t, bob).length === 1, 20_000);
    const metrics = await node.metrics();
    expect(
      metric(metrics, 'threshold_outbox_jobs_total{channel="sms",outcome="retried",code="20429"}'),
    ).toBe(8);
    expect(metric(metrics, 'threshold_dead_letters_total{reason="sms_attempts"}')).toBe(0);
  });

  it("Twilio's Retry-After reaches the sender", async () => {
    const s = standin();
    const client = new TwilioSmsClient({
      accountSid: s.accountSid,
      authToken: s.authToken,
      apiUrl: s.url,
      timeoutMs: 5000,
    });
    s.failNext(1, { ...TOO_MANY_REQUESTS, retryAfter: 7 });
    const err = await client.send({ to: phone(), from: phone(), body: 'x' }).catch((e) => e);
    expect(err).toBeInstanceOf(SmsSendError);
    expect(err).toMatchObject({
      httpStatus: 429,
      twilioCode: 20429,
      retryAfterMs: 7000,
      reach: 'answered',
    });
  });

  it('a refused connection is "unreached", a timeout "ambiguous"', async () => {
    const s = standin();
    const refused = new TwilioSmsClient({
      accountSid: s.accountSid,
      authToken: s.authToken,
      apiUrl: 'http://127.0.0.1:1',
      timeoutMs: 2000,
    });
    expect(
      await refused.send({ to: phone(), from: phone(), body: 'x' }).catch((e) => e),
    ).toMatchObject({
      reach: 'unreached',
    });
    const slow = new TwilioSmsClient({
      accountSid: s.accountSid,
      authToken: s.authToken,
      apiUrl: s.url,
      timeoutMs: 100,
    });
    s.delay(300);
    expect(
      await slow.send({ to: phone(), from: phone(), body: 'x' }).catch((e) => e),
    ).toMatchObject({
      reach: 'ambiguous',
    });
  });

  it('the same MessageSid twice at once is relayed once', async () => {
    const s = standin();
    const node = await startSmsNode(s, 'sms-twice');
    const [room, ann, bob] = [phone(), phone(), phone()];
    await node.smsRoom('twice', room, [`phone:${ann}`, `phone:${bob}`]);
    const sid = 'SM0000000000000000000000000000a003';
    const answers = await Promise.all([
      node.text(ann, room, 'just once', { sid }),
      node.text(ann, room, 'just once', { sid }),
    ]);
    expect(answers.map((r) => r.status)).toEqual([200, 200]);
    await node.text(ann, room, 'sentinel');
    await s.waitFor('the sentinel', (t) =>
      textsTo(t, bob).some((m) => m.body.endsWith('sentinel')),
    );
    expect(textsTo(s.messages(), bob).map((m) => m.body)).toEqual([
      `${ann}: just once`,
      `${ann}: sentinel`,
    ]);
    const metrics = await node.metrics();
    expect(metric(metrics, 'threshold_sms_inbound_total{outcome="relayed"}')).toBe(2);
    expect(metric(metrics, 'threshold_sms_inbound_total{outcome="duplicate"}')).toBe(1);
  });
});
