import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { MemberSettingsStore } from '../../src/delivery/member-settings.ts';
import { createSmsChannel, type SmsChannelOptions } from '../../src/delivery/channels/sms.ts';
import { SENDERS_GROUP } from '../../src/delivery/outbox-job.ts';
import { OutboxLedger, prepareOutbox } from '../../src/delivery/outbox-ledger.ts';
import { OutboxRunner } from '../../src/delivery/outbox-runner.ts';
import type { OutboundSms, SmsClient } from '../../src/delivery/sms-client.ts';
import { PartitionConsumer } from '../../src/mesh/partition-consumer.ts';
import type { Clock } from '../../src/delivery/token-bucket.ts';
import { SmsSendError } from '../../src/errors.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { BlockingWait } from '../../src/redis/streams.ts';
import { connect, deleteKeys, uniquePrefix, useRedis } from '../helpers/redis.ts';

const redis = defineScripts(useRedis());
const NODE = 'sender-node';

interface Options extends Omit<SmsChannelOptions, 'retry'> {
  maxAttempts: number;
  blockMs: number;
}

const OPTIONS: Options = {
  ratePerSecond: 1000,
  burst: 100,
  maxAttempts: 3,
  sendTimeoutMs: 1000,
  maxInFlight: 1,
  maxQueuedPerNumber: 10,
  blockMs: 50,
  publicUrl: 'https://relay.example.test',
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

/** Member settings whose reads fail as scripted (a Redis timeout in the middle of a send). */
class FlakyMembers extends MemberSettingsStore {
  failures: Error[] = [];
  /** Runs before a read fails (e.g. the lease moves on meanwhile). */
  beforeFailure: () => Promise<unknown> = async () => {};
  override async get(member: string) {
    const failure = this.failures.shift();
    if (failure) {
      await this.beforeFailure();
      throw failure;
    }
    return super.get(member);
  }
}

/** The sender's log messages, for proof of what it did (a fenced read, a dead letter). */
function captureLog() {
  const messages: string[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write(line: string) {
        messages.push((JSON.parse(line) as { msg: string }).msg);
      },
    },
  );
  const logged = (what: RegExp) =>
    eventually(
      `a log line ${what}`,
      async () => messages,
      (m) => m.some((l) => what.test(l)),
    );
  return { log, logged };
}

/** A promise and its resolve (Promise.withResolvers() is Node 22). */
function deferred() {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** The lease is not ours: what the reader or runner logs when a fenced read (or settle) tells it so. */
const FENCED_LOG = /lease lost \(fenced read\)|the partition lease is not ours/;

async function setup(
  name: string,
  leases: Map<number, string>,
  {
    maxAttempts = OPTIONS.maxAttempts,
    commands = redis,
    options = {},
    clock = Date as Clock,
  }: {
    maxAttempts?: number;
    commands?: Redis;
    options?: Partial<Options>;
    clock?: Clock;
  } = {},
) {
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
  const members = new FlakyMembers(redis, keys);
  const { log, logged } = captureLog();
  const opts = { ...OPTIONS, maxAttempts, ...options };
  const retry = { maxAttempts, maxRetryMs: 3_600_000, backoffBaseMs: 10, backoffMaxMs: 20 };
  const sms = createSmsChannel({ client, members, metrics }, { ...opts, retry });
  const ledger = new OutboxLedger(
    commands,
    keys,
    { inFlightMs: () => opts.sendTimeoutMs, markerTtlMs: 3_600_000, deadLength: 100 },
    log,
  );
  const runner = new OutboxRunner(
    new Map([['sms', sms]]),
    ledger,
    metrics,
    () => leases,
    { readBatch: 10, promoteMs: opts.blockMs },
    log,
    clock,
  );
  const consumer = new PartitionConsumer(
    new BlockingWait(reader, commands),
    commands,
    keys,
    runner,
    {
      nodeId: NODE,
      batch: 10,
      blockMs: opts.blockMs,
      stream: (p) => keys.outbox(p),
      group: SENDERS_GROUP,
    },
    log,
  );
  runner.rewind = (p) => consumer.rewind(p);
  // As the coordinator does: a partition we hold that the reader dropped is added again.
  let stopped = false;
  consumer.onFenced = (p) => {
    setTimeout(() => {
      const lease = leases.get(p);
      if (lease && !stopped) void consumer.add(p, lease);
    }, 250);
  };
  const sender = {
    async start() {
      for (const [p, lease] of leases) await consumer.add(p, lease);
      await consumer.start();
    },
    release: (p: number) => consumer.remove(p).then(() => runner.release(p)),
    async stop() {
      stopped = true;
      await consumer.stop();
      await runner.stop(1000);
    },
  };
  // prettier-ignore
  const job = (to: string, body: string) => redis.xadd(
    keys.outbox(0), '*', 'ch', 'sms', 'kind', 'relay', 'd', `r~phone:${to}~m1`, 'to', `phone:${to}`,
    'from', '+15550000000', 'body', body, 'media', '', 'room', 'r', 'msg', 'm1', 'attempt', 0,
  );
  return { keys, client, metrics, sender, job, members, logged };
}

describe('OutboxRunner (SMS channel)', () => {
  it('sends nothing for a partition whose lease is not ours, and sends once it is', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, sender, job, logged } = await setup('outbox-fenced', leases);
    await redis.set(keys.lease(0), 'other-node:7');
    await job('+15550000001', 'fenced');
    await sender.start();
    // Proof that it read (fenced) before we look for what it did not do.
    await logged(FENCED_LOG);
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
      statusCallback: `https://relay.example.test/twilio/status?d=${encodeURIComponent('r~phone:+15550000001~m1')}`,
    });
    await eventually(
      'acknowledged and deleted',
      () => redis.xlen(keys.outbox(0)),
      (n) => n === 0,
    );
  });

  it('a sender that has not noticed a handoff takes no job into its pending list (fenced read)', async () => {
    // It still believes it holds partition 0; the lease went to another node meanwhile.
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, sender, job, logged } = await setup('outbox-stale', leases);
    await redis.set(keys.lease(0), 'new-owner:2');
    await job('+15550000004', 'for the new owner');
    await sender.start();
    await logged(FENCED_LOG);
    expect(client.sent).toEqual([]);
    // Unread: the new owner reads it with '>' instead of finding it in a stranger's pending list.
    const [pending] = (await redis.xpending(keys.outbox(0), 'senders')) as [number];
    expect(pending).toBe(0);
  });

  it('jobs of two partitions with the same entry id (one commit batch, one millisecond) are both sent at once', async () => {
    const leases = new Map([
      [0, `${NODE}:1`],
      [1, `${NODE}:1`],
    ]);
    const { keys, client, sender } = await setup('outbox-same-id', leases);
    for (const p of [0, 1]) {
      await redis.set(keys.lease(p), `${NODE}:1`);
      // prettier-ignore
      await redis.xadd(
        keys.outbox(p), '1-1', 'ch', 'sms', 'kind', 'relay', 'd', `r${p}~phone:+1555000000${p}~m${p}`,
        'to', `phone:+1555000000${p}`, 'from', `+1555000010${p}`, 'body', `from partition ${p}`,
        'media', '', 'room', `r${p}`, 'msg', `m${p}`, 'attempt', 0,
      );
    }
    await sender.start();
    // Not one now and the other at the next rescan of pending jobs (30 s).
    await eventually(
      'both texts',
      async () => client.sent.map((t) => t.body).sort(),
      (b) => b.length === 2,
      5_000,
    );
    expect(client.sent.map((t) => t.body).sort()).toEqual(['from partition 0', 'from partition 1']);
  });

  it('a 5xx schedules the retry in the retry set before acknowledging, and the retry is sent', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, metrics, sender, job } = await setup('outbox-retry', leases);
    await redis.set(keys.lease(0), `${NODE}:1`);
    client.failures.push(new SmsSendError('Twilio 500', 500, 20500));
    await job('+15550000002', 'again');
    await sender.start();
    await eventually(
      'sent on the second try',
      async () => client.sent.length,
      (n) => n === 1,
    );
    expect(client.sent[0]?.body).toBe('again');
    // Counted once the send is settled, just after the stand-in has it.
    const text = await eventually(
      'the send settled',
      () => metrics.registry.metrics(),
      (t) => /threshold_outbox_jobs_total\{channel="sms",outcome="sent",code=""\} 1/.test(t),
    );
    expect(text).toMatch(
      /threshold_outbox_jobs_total\{channel="sms",outcome="retried",code="20500"\} 1/,
    );
    expect(await redis.zcard(keys.outboxRetry(0))).toBe(0);
  });

  it('a job waiting for its retry counts in threshold_outbox_depth and its age in threshold_outbox_oldest_seconds', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, metrics, sender, job } = await setup('outbox-gauges', leases);
    await redis.set(keys.lease(0), `${NODE}:1`);
    client.failures.push(new SmsSendError('slow down', 429, 20429, { retryAfterMs: 60_000 }));
    await job('+15550000011', 'later');
    await sender.start();
    const text = await eventually(
      'the gauges',
      () => metrics.registry.metrics(),
      (t) => /threshold_outbox_depth\{partition="0"\} 1$/m.test(t),
    );
    const age = Number(/threshold_outbox_oldest_seconds\{partition="0"\} ([\d.]+)/.exec(text)?.[1]);
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(60);
    expect(await redis.zcard(keys.outboxRetry(0))).toBe(1);
  });

  it('a Redis error in the middle of a send leaves the job pending, and it is read again and sent exactly once', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, sender, job, members } = await setup('outbox-redis-error', leases);
    await redis.set(keys.lease(0), `${NODE}:1`);
    members.failures.push(new Error('Command timed out'));
    await job('+15550000003', 'despite Redis');
    await sender.start();
    await eventually(
      'the text',
      async () => client.sent.length,
      (n) => n === 1,
    );
    await eventually(
      'acknowledged and deleted',
      () => redis.xlen(keys.outbox(0)),
      (n) => n === 0,
    );
    await new Promise((r) => setTimeout(r, 200));
    expect(client.sent.map((m) => m.body)).toEqual(['despite Redis']);
  });

  it('a job that keeps failing unexpectedly is dead-lettered after maxAttempts, with its reason', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, metrics, sender, job } = await setup('outbox-bad-job', leases, {
      maxAttempts: 2,
    });
    await redis.set(keys.lease(0), `${NODE}:1`);
    // prettier-ignore
    await redis.xadd(
      keys.outbox(0), '*', 'ch', 'sms', 'kind', 'relay', 'd', 'r~phone:+15550000004~m2', 'to', 'phone:+15550000004',
      'from', '+15550000000', 'body', 'with bad media', 'media', '{not json', 'room', 'r',
      'msg', 'm2', 'attempt', 0,
    );
    await job('+15550000005', 'the next one');
    await sender.start();
    const dead = await eventually(
      'the dead letter',
      () => redis.xrange(keys.dead, '-', '+'),
      (d) => d.length === 1,
    );
    const fields = dead[0]?.[1] ?? [];
    expect(fields[fields.indexOf('reason') + 1]).toBe('sms_error');
    await eventually(
      'the outbox empty',
      () => redis.xlen(keys.outbox(0)),
      (n) => n === 0,
    );
    expect(client.sent.map((m) => m.body)).toEqual(['the next one']);
    // Counted once the dead-lettered job is settled, so a moment after the outbox empties.
    const counted = await eventually(
      'the dead letter counted',
      () => metrics.registry.metrics(),
      (text) => /threshold_dead_letters_total\{reason="sms_error"\}/.test(text),
    );
    expect(counted).toMatch(/threshold_dead_letters_total\{reason="sms_error"\} 1/);
  });

  it('release(p): queued jobs stay pending for the next owner and the send in flight is settled first', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, sender, job } = await setup('outbox-release', leases);
    await redis.set(keys.lease(0), `${NODE}:1`);
    const { promise: gate, resolve: finish } = deferred();
    const { promise: inFlight, resolve: started } = deferred();
    const send = client.send.bind(client);
    client.send = async (sms) => {
      started();
      await gate;
      return send(sms);
    };
    await job('+15550000006', 'in flight');
    await job('+15550000007', 'queued');
    await sender.start();
    await inFlight;
    const released = sender.release(0);
    setTimeout(finish, 100);
    await released;
    leases.delete(0);
    expect(client.sent.map((m) => m.body)).toEqual(['in flight']);
    // The first is settled (gone), the second pending for the next owner.
    const left = await redis.xrange(keys.outbox(0), '-', '+');
    expect(left.map(([, f]) => f[f.indexOf('body') + 1])).toEqual(['queued']);
  });

  it('a sender whose lease is gone dead-letters nothing: the next owner (here, itself again) sends the job', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { keys, client, sender, job, members, logged } = await setup(
      'outbox-dead-fenced',
      leases,
      {
        maxAttempts: 1,
      },
    );
    await redis.set(keys.lease(0), `${NODE}:1`);
    // The job fails unexpectedly (dead-lettered at once, maxAttempts 1) after the lease moved on.
    members.failures.push(new Error('a malformed setting'));
    members.beforeFailure = () => redis.set(keys.lease(0), 'next-owner:2');
    await job('+15550000008', 'for whoever holds the lease');
    await sender.start();
    await logged(FENCED_LOG);
    expect(await redis.xlen(keys.dead)).toBe(0);

    await redis.set(keys.lease(0), `${NODE}:1`);
    await eventually(
      'the text',
      async () => client.sent.length,
      (n) => n === 1,
    );
    expect(await redis.xlen(keys.dead)).toBe(0);
  });

  it('release(p) waits for a dead letter being written', async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    const { promise: gate, resolve: open } = deferred();
    const { promise: deadLettering, resolve: writing } = deferred();
    // The commands connection, whose XADD to thr:dead waits for the gate.
    const commands = new Proxy(redis, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === 'xadd')
          return async (...args: Parameters<typeof redis.xadd>) => {
            writing();
            await gate;
            return target.xadd(...args);
          };
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const { keys, sender, members } = await setup('outbox-release-dead', leases, {
      maxAttempts: 1,
      commands,
    });
    await redis.set(keys.lease(0), `${NODE}:1`);
    members.failures.push(new Error('a malformed setting'));
    // prettier-ignore
    await redis.xadd(
      keys.outbox(0), '*', 'ch', 'sms', 'kind', 'relay', 'd', 'r~phone:+15550000009~m1', 'to', 'phone:+15550000009',
      'from', '+15550000000', 'body', 'doomed', 'media', '', 'room', 'r', 'msg', 'm1', 'attempt', 0,
    );
    await sender.start();
    await deadLettering;
    let done = false;
    const released = sender.release(0).then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    open();
    await released;
    expect(await redis.xlen(keys.dead)).toBe(1);
  });

  it("a number's texts keep their order when one arrives just as its last parked text comes due", async () => {
    const leases = new Map([[0, `${NODE}:1`]]);
    // Time as the sender sees it moves only when the test says.
    const clock = { t: Date.now(), now: () => clock.t };
    const { keys, client, sender, job } = await setup('outbox-parked-order', leases, {
      clock,
      // One text a second, one held in memory: a second one is parked for its slot. Long
      // blocking reads: the sender waits in one while the test moves time on.
      options: { ratePerSecond: 1, burst: 1, maxQueuedPerNumber: 1, blockMs: 1000 },
    });
    await redis.set(keys.lease(0), `${NODE}:1`);
    await job('+15550000010', 'first');
    await job('+15550000010', 'second');
    await sender.start();
    await eventually(
      'the first sent and the second parked',
      async () => [client.sent.length, await redis.zcard(keys.outboxRetry(0))],
      ([sent, parked]) => sent === 1 && parked === 1,
    );
    // The second's slot comes, and a third text arrives before the sender promoted the second.
    clock.t += 2000;
    await job('+15550000010', 'third');
    await eventually(
      'the second sent',
      async () => client.sent.length,
      (n) => n >= 2,
    );
    clock.t += 1000;
    await eventually(
      'the third sent',
      async () => client.sent.length,
      (n) => n === 3,
    );
    expect(client.sent.map((m) => m.body)).toEqual(['first', 'second', 'third']);
  });
});
