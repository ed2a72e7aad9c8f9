import { describe, expect, it, onTestFinished } from 'vitest';
import { MemberSettingsStore } from '../../src/delivery/member-settings.ts';
import {
  OutboxSender,
  type OutboxSenderOptions,
  prepareOutbox,
} from '../../src/delivery/outbox-sender.ts';
import type { OutboundSms, SmsClient } from '../../src/delivery/sms-client.ts';
import { SmsSendError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { connect, deleteKeys, uniquePrefix, useRedis } from '../helpers/redis.ts';
import { eventually } from '../twilio/sms-node.ts';

const redis = defineScripts(useRedis());
const NODE = 'sender-node';

const OPTIONS: OutboxSenderOptions = {
  nodeId: NODE,
  ratePerSecond: 1000,
  burst: 100,
  maxAttempts: 3,
  maxRetryMs: 3_600_000,
  sendTimeoutMs: 1000,
  markerTtlMs: 3_600_000,
  backoffBaseMs: 10,
  backoffMaxMs: 20,
  readBatch: 10,
  maxInFlight: 1,
  maxQueuedPerNumber: 10,
  blockMs: 50,
  publicUrl: 'https://relay.example.test',
  deadLength: 100,
};

/** A client that records texts and fails as scripted. */
class FakeClient implements SmsClient {
  readonly sent: OutboundSms[] = [];
  failures: SmsSendError[] = [];
  async send(sms: OutboundSms) {
    const failure = this.failures.shift();
    if (failure) throw failure;
    this.sent.push(sms);
    return { sid: `SM${this.sent.length}` };
  }
}

async function setup(name: string, leases: Map<number, string>) {
  const keys = new Keys(uniquePrefix(name), 2);
  onTestFinished(async () => {
    await sender.stop();
    await reader.quit();
    await deleteKeys(redis, keys.prefix);
  });
  await prepareOutbox(redis, keys);
  const reader = connect(undefined, { maxRetriesPerRequest: null });
  const client = new FakeClient();
  const metrics = new Metrics();
  const sender = new OutboxSender(
    reader,
    redis,
    keys,
    client,
    new MemberSettingsStore(redis, keys),
    metrics,
    () => leases,
    OPTIONS,
    createLogger('silent'),
  );
  // prettier-ignore
  const job = (to: string, body: string) => redis.xadd(
    keys.outbox(0), '*', 'kind', 'relay', 'd', `r~${to}~m1`, 'to', to, 'from', '+15550000000',
    'body', body, 'media', '', 'room', 'r', 'msg', 'm1', 'attempt', 0,
  );
  return { keys, client, metrics, sender, job };
}

describe('OutboxSender', () => {
  it('sends nothing for a partition whose lease is not ours, and sends once it is', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, sender, job } = await setup('outbox-fenced', leases);
    await redis.set(keys.lease(0), 'other-node:7');
    await job('+15550000001', 'fenced');
    sender.start();
    await new Promise((r) => setTimeout(r, 300));
    expect(client.sent).toEqual([]);
    // Still in the outbox, unacknowledged, for the lease holder.
    expect(await redis.xlen(keys.outbox(0))).toBe(1);

    // The lease holds our value again: the job is read again and sent.
    await redis.set(keys.lease(0), `${NODE}:1`);
    await eventually(
      'the text',
      async () => client.sent.length,
      (n) => n === 1,
    );
    expect(client.sent[0]).toMatchObject({
      to: '+15550000001',
      body: 'fenced',
      statusCallback: `https://relay.example.test/twilio/status?d=${encodeURIComponent('r~+15550000001~m1')}`,
    });
    await eventually(
      'acknowledged and deleted',
      () => redis.xlen(keys.outbox(0)),
      (n) => n === 0,
    );
  });

  it('a 5xx schedules the retry in the retry set before acknowledging, and the retry is sent', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, metrics, sender, job } = await setup('outbox-retry', leases);
    await redis.set(keys.lease(0), `${NODE}:1`);
    client.failures.push(new SmsSendError('Twilio 500', 500, 20500));
    await job('+15550000002', 'again');
    sender.start();
    await eventually(
      'sent on the second try',
      async () => client.sent.length,
      (n) => n === 1,
    );
    expect(client.sent[0]?.body).toBe('again');
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/threshold_sms_outbound_total\{outcome="retried",code="20500"\} 1/);
    expect(text).toMatch(/threshold_sms_outbound_total\{outcome="sent",code=""\} 1/);
    expect(await redis.zcard(keys.outboxRetry(0))).toBe(0);
  });
});
