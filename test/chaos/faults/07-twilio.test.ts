/**
 * Scenario 7: Twilio misbehaves while rooms text their members: a storm of 429s (with
 * Retry-After), a run of 5xx, then answers slower than sms.sendTimeoutMs (ambiguous: the
 * text may or may not have gone). No text is lost, none goes to a member who texted STOP,
 * and each (message, member) is sent once, except after an ambiguous timeout (counted, at
 * most one extra each).
 */
import { expect, it, onTestFinished } from 'vitest';
import { eventually } from '../../helpers/eventually.ts';
import { admin, sleep, startMesh } from '../../helpers/mesh.ts';
import { postSigned } from '../../twilio/signing.ts';
import { inboundText, standinEnv } from '../../twilio/sms-node.ts';
import { PUBLIC_URL, SERVER_ERROR, startStandin, TOO_MANY_REQUESTS } from '../../twilio/standin.ts';
import { figures, length, sumMetric } from '../chaos.ts';

const ROOMS = 4;
const PER_PHASE = length(6, 3);
const STORM = length(60, 30);
const SEND_TIMEOUT_MS = 1_000;

it('Twilio failing (429 storm, 5xx, timeouts): no text lost, none to an opted-out member, repeats only after ambiguous timeouts', async () => {
  const standin = await startStandin();
  onTestFinished(() => standin.close());
  const mesh = await startMesh(3, {
    ...standinEnv(standin, 4),
    THRESHOLD_SMS_SEND_TIMEOUT_MS: String(SEND_TIMEOUT_MS),
    THRESHOLD_SMS_BACKOFF_BASE_MS: '200',
    THRESHOLD_SMS_BACKOFF_MAX_MS: '2000',
    THRESHOLD_SMS_MAX_ATTEMPTS: '30',
  });
  // Status callbacks come in through any node, as through a load balancer.
  standin.autoStatus((url) => url.replace(PUBLIC_URL, mesh.pick(0).url));

  const rooms = Array.from({ length: ROOMS }, (_, i) => `tw${i}`);
  const numbers = rooms.map((_, i) => `+1555070${String(i).padStart(4, '0')}`);
  const reached = new Map<string, string[]>();
  const stopped: string[] = [];
  for (const [i, id] of rooms.entries()) {
    expect(
      (await admin(mesh.pick(0), 'POST', '/v1/rooms', { id, numbers: [numbers[i]] })).status,
    ).toBe(201);
    const phones = [0, 1, 2].map((m) => `+1555071${String(i * 3 + m).padStart(4, '0')}`);
    for (const p of phones)
      expect((await admin(mesh.pick(0), 'PUT', `/v1/rooms/${id}/members/phone:${p}`)).status).toBe(
        201,
      );
    reached.set(id, phones.slice(0, 2));
    stopped.push(phones[2] as string);
  }
  // The third member of each room texts STOP first.
  const inbound = mesh.pick(0);
  for (const [i, p] of stopped.entries()) {
    const form = inboundText(standin.accountSid, p, numbers[i] as string, 'STOP');
    expect(
      (
        await postSigned(
          `${inbound.url}/twilio/sms`,
          `${PUBLIC_URL}/twilio/sms`,
          standin.authToken,
          form,
        )
      ).status,
    ).toBe(200);
  }
  await eventually(
    'the opt-outs recorded',
    () => sumMetric([inbound], 'threshold_sms_inbound_total{outcome="opt_out"}'),
    (n) => n === ROOMS,
  );

  const tags: [room: string, tag: string][] = [];
  const publishPhase = async (phase: string) => {
    for (let n = 0; n < PER_PHASE; n++) {
      for (const [i, room] of rooms.entries()) {
        const tag = `[${room}/${phase}/${n}]`;
        const res = await admin(mesh.pick(i + n), 'POST', `/v1/rooms/${room}/messages`, {
          body: tag,
        });
        expect(res.status).toBe(202);
        tags.push([room, tag]);
      }
      await sleep(100);
    }
  };

  standin.failNext(STORM, { ...TOO_MANY_REQUESTS, retryAfter: 1 });
  await publishPhase('429');
  await sleep(2_000);
  standin.failNext(STORM, SERVER_ERROR);
  await publishPhase('5xx');
  await sleep(2_000);
  standin.delay(SEND_TIMEOUT_MS + 500);
  await publishPhase('timeout');
  await sleep(3_000);
  standin.delay(0);

  const count = (texts: { to: string; body: string }[], to: string, tag: string) =>
    texts.filter((t) => t.to === to && t.body.includes(tag)).length;
  const allSent = (texts: { to: string; body: string }[]) =>
    tags.every(([room, tag]) => reached.get(room)!.every((to) => count(texts, to, tag) > 0));
  const started = Date.now();
  const texts = await standin
    .waitFor('every text sent', allSent, 90_000)
    .catch(() => standin.messages());
  const drainedMs = Date.now() - started;

  let delivered = 0;
  let repeats = 0;
  let worst = 0;
  for (const [room, tag] of tags)
    for (const to of reached.get(room)!) {
      const n = count(texts, to, tag);
      if (n > 0) delivered++;
      repeats += Math.max(0, n - 1);
      worst = Math.max(worst, n);
    }
  const ambiguous = await sumMetric(mesh.nodes, 'threshold_outbox_ambiguous_total{channel="sms"}');
  // Timed out, then found already with Twilio (its status callback came): settled, not resent.
  const reconciled = await sumMetric(
    mesh.nodes,
    'threshold_outbox_jobs_total{channel="sms",outcome="reconciled",code=""}',
  );
  const toStopped = stopped.reduce((sum, p) => sum + standin.attempts(p), 0);
  const requests = [...reached.values()].flat().reduce((sum, p) => sum + standin.attempts(p), 0);
  figures('twilio', {
    messages: tags.length,
    'texts-expected': tags.length * 2,
    'texts-delivered': delivered,
    lost: tags.length * 2 - delivered,
    repeated: repeats,
    ambiguous,
    'timed-out-then-reconciled': reconciled,
    'to-opted-out': toStopped,
    'twilio-requests': requests,
    'drained-after-faults': `${drainedMs}ms`,
  });

  expect(delivered).toBe(tags.length * 2);
  expect(toStopped).toBe(0);
  expect(repeats).toBeLessThanOrEqual(ambiguous);
  expect(worst).toBeLessThanOrEqual(2);
  // The slow phase did time sends out.
  expect(reconciled + ambiguous).toBeGreaterThan(0);
}, 240_000);
