import { createHmac } from 'node:crypto';
import { expect, it } from 'vitest';
import { eventually } from '../../helpers/eventually.ts';
import { postSigned, twilioSignature } from '../../twilio/signing.ts';
import {
  inboundText,
  metric,
  phone,
  startSmsNode,
  textsTo,
  useStandin,
} from '../../twilio/sms-node.ts';
import { PUBLIC_URL } from '../../twilio/standin.ts';
import { figures, SHORT } from '../chaos.ts';
import { Rng, seed } from './abuse.ts';

/**
 * Forged Twilio webhooks: random signatures, signatures over another URL, other parameters
 * or another token, none at all. Not one may be accepted or leave a trace (nothing
 * committed, no text sent, no delivery status recorded), each gets 403 problem+json, and a
 * correctly signed request still goes through.
 */

const TRIES = SHORT ? 1_000 : 10_000;
const CONCURRENCY = 16;
const standin = useStandin();

type Forge = (
  token: string,
  url: string,
  params: Record<string, string>,
) => {
  signature: string | null;
  params: Record<string, string>;
  kind: string;
};

/** Every way of getting the signature wrong; `url` and `params` are what is actually posted. */
function forgers(rng: Rng, nodeUrl: string): Forge[] {
  const sign = twilioSignature;
  return [
    (_t, _u, params) => ({
      kind: 'random',
      params,
      signature: rng.bytes(20).toString('base64'),
    }),
    (_t, _u, params) => ({ kind: 'missing', params, signature: null }),
    (_t, _u, params) => ({ kind: 'empty', params, signature: '' }),
    (t, u, params) => ({ kind: 'wrong token', params, signature: sign(`${t}x`, u, params) }),
    (t, u, params) => ({
      kind: "node's own URL",
      params,
      signature: sign(t, u.replace(PUBLIC_URL, nodeUrl), params),
    }),
    (t, u, params) => ({
      kind: 'other webhook',
      params,
      signature: sign(
        t,
        u.includes('/twilio/sms')
          ? u.replace('/twilio/sms', '/twilio/status')
          : u.replace(/\/twilio\/status.*/, '/twilio/sms'),
        params,
      ),
    }),
    (t, u, params) => ({
      kind: 'http instead of https',
      params,
      signature: sign(t, u.replace('https:', 'http:'), params),
    }),
    (t, u, params) => ({
      kind: 'other query',
      params,
      signature: sign(t, u.includes('?') ? `${u}x` : `${u}?d=x`, params),
    }),
    (t, u, params) => {
      const signature = sign(t, u, params);
      const key = rng.pick(Object.keys(params));
      return { kind: `${key} changed`, params: { ...params, [key]: `${params[key]}1` }, signature };
    },
    (t, u, params) => ({
      kind: 'parameter added',
      signature: sign(t, u, params),
      params: { ...params, MediaUrl0: 'https://evil.example/x.png', NumMedia: '1' },
    }),
    (t, u, params) => {
      const { MessageSid: _, ...rest } = params;
      return { kind: 'parameter removed', signature: sign(t, u, params), params: rest };
    },
    (t, u, params) => ({
      kind: 'hex instead of base64',
      params,
      signature: Buffer.from(sign(t, u, params), 'base64').toString('hex'),
    }),
    (t, u, params) => {
      const data = Object.keys(params)
        .sort()
        .reduce((acc, k) => acc + k + params[k], u);
      return {
        kind: 'HMAC-SHA256',
        params,
        signature: createHmac('sha256', t).update(data).digest('base64'),
      };
    },
    (t, u, params) => {
      const real = sign(t, u, params);
      const flip = rng.int(real.length - 1);
      const c = real[flip] === 'A' ? 'B' : 'A';
      return {
        kind: 'one character off',
        params,
        signature: real.slice(0, flip) + c + real.slice(flip + 1),
      };
    },
  ];
}

it(`accepts none of ${TRIES} forged webhooks (403 problem+json, no side effect), and a signed one`, async () => {
  const s = standin();
  const node = await startSmsNode(s, 'forgery');
  const [number, ann, bob] = [phone(), phone(), phone()];
  await node.smsRoom('forged', number, [`phone:${ann}`, `phone:${bob}`]);

  // The control: a correctly signed text is relayed (sent to bob, no status callback yet).
  const sid = 'SM00000000000000000000000000000f01';
  expect((await node.text(ann, number, 'the real one', { sid })).status).toBe(200);
  await eventually(
    'the real text sent to bob',
    () => node.status(sid, 'forged'),
    (st) => st.channels?.sms?.sent === 1,
  );
  const [toBob] = textsTo(s.messages(), bob);
  const statusUrl = toBob?.statusCallback ?? '';
  expect(statusUrl).toContain(`${PUBLIC_URL}/twilio/status?d=`);

  const before = await node.metrics();
  const textsBefore = s.messages().length;
  const runSeed = seed();
  const rng = new Rng(runSeed);
  const forges = forgers(rng, node.url);
  const byKind = new Map<string, number>();
  const accepted: string[] = [];
  const notProblem: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < TRIES) {
        const i = next++;
        const sms = i % 2 === 0;
        const url = sms ? `${PUBLIC_URL}/twilio/sms` : statusUrl;
        const params = sms
          ? inboundText(s.accountSid, ann, number, `forged ${i}`)
          : { MessageSid: toBob?.sid ?? '', MessageStatus: 'failed', ErrorCode: '30003' };
        const forged = rng.pick(forges)(s.authToken, url, params);
        const res = await postSigned(
          node.deliverTo(url),
          url,
          s.authToken,
          forged.params,
          forged.signature,
        );
        byKind.set(forged.kind, (byKind.get(forged.kind) ?? 0) + 1);
        if (res.status !== 403) accepted.push(`${forged.kind} → ${res.status}`);
        else if (res.headers.get('content-type') !== 'application/problem+json')
          notProblem.push(forged.kind);
        await res.arrayBuffer();
      }
    }),
  );

  const after = await node.metrics();
  const badSignatures =
    metric(after, 'threshold_sms_inbound_total{outcome="bad_signature"}') -
    metric(before, 'threshold_sms_inbound_total{outcome="bad_signature"}');
  const room = (await (await node.admin('GET', '/v1/rooms/forged')).json()) as { seq: number };
  const statusCallbacks = (text: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith('threshold_sms_status_total{'))
      .reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
  figures('twilio forgery', {
    seed: runSeed,
    tries: TRIES,
    accepted: accepted.length,
    'non-problem': notProblem.length,
    'bad-signature-counted': badSignatures,
    committed: room.seq - 1,
    'texts-sent': s.messages().length - textsBefore,
    'statuses-recorded': statusCallbacks(after) - statusCallbacks(before),
    variants: byKind.size,
  });
  expect(accepted.slice(0, 5)).toEqual([]);
  expect(notProblem.slice(0, 5)).toEqual([]);
  expect(badSignatures).toBe(TRIES);
  // No trace: only the control message was ever committed, no text went out for a forged
  // one, and no forged status callback was recorded.
  expect(room.seq).toBe(1);
  expect(s.messages().length).toBe(textsBefore);
  expect(statusCallbacks(after)).toBe(statusCallbacks(before));
  expect((await node.status(sid, 'forged')).channels?.sms).toMatchObject({ sent: 1, failed: 0 });

  // And the real thing still works after all that: a signed status callback lands, a signed
  // text is relayed.
  expect(await s.sendStatus(toBob!, 'delivered', node.deliverTo)).toBe(204);
  expect((await node.status(sid, 'forged')).channels?.sms).toMatchObject({ delivered: 1 });
  const sid2 = 'SM00000000000000000000000000000f02';
  expect((await node.text(ann, number, 'still here', { sid: sid2 })).status).toBe(200);
  await eventually(
    'the second real text committed',
    async () =>
      ((await (await node.admin('GET', '/v1/rooms/forged')).json()) as { seq: number }).seq,
    (seq) => seq === 2,
  );
});
