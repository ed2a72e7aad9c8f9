import { connectAsync, type MqttClient } from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { NotFoundError, UnavailableError } from '../../src/errors.ts';
import { createMqttSource, mode } from '../../src/ingress/sources/mqtt.ts';
import type {
  MessageSource,
  PublishResult,
  SourceContext,
  SourceMessage,
} from '../../src/ingress/source.ts';
import { createLogger } from '../../src/log.ts';
import { freePort } from '../helpers/ports.ts';
import { eventually } from '../helpers/eventually.ts';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.ts';

type Behaviour = (message: SourceMessage, call: number) => Promise<PublishResult> | PublishResult;

const accept: Behaviour = (m) => ({ id: `mqtt:${m.id}`, status: 'accepted' });

/** A `ctx` whose publish records every call and answers as `behave` says (default: accept). */
function fakeContext(name: string, options: Record<string, unknown>) {
  const calls: SourceMessage[] = [];
  const controller = new AbortController();
  let behave: Behaviour = accept;
  const ctx: SourceContext = {
    name,
    options,
    log: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    signal: controller.signal,
    publish: async (message) => {
      calls.push(message);
      return behave(message, calls.length);
    },
  };
  return {
    ctx,
    calls,
    behave(b: Behaviour) {
      behave = b;
    },
  };
}

/** A started source, stopped when the test finishes (if the test did not stop it). */
async function startSource(ctx: SourceContext): Promise<MessageSource> {
  const source = createMqttSource(ctx);
  onTestFinished(() => source.stop());
  await source.start();
  return source;
}

async function producer(broker: Mosquitto): Promise<MqttClient> {
  const client = await connectAsync(broker.url, { clientId: `producer-${Math.random()}` });
  onTestFinished(() => client.endAsync());
  return client;
}

const send = (client: MqttClient, room: string, payload: string | object) =>
  client.publishAsync(
    `threshold/rooms/${room}/messages`,
    typeof payload === 'string' ? payload : JSON.stringify(payload),
    { qos: 1 },
  );

const callCount = (calls: SourceMessage[], n: number, timeoutMs = 5_000) =>
  eventually(
    `${n} publish calls`,
    async () => calls.length,
    (l) => l >= n,
    timeoutMs,
  );

/** Nothing more arrives for a while (e.g. no redelivery of an acknowledged message). */
const quiet = () => new Promise((r) => setTimeout(r, 400));

describe('MQTT source', () => {
  it('runs on one node', () => {
    expect(mode).toBe('one-node');
  });

  it('hands messages to publish in order, with room, body, id and sender', async () => {
    const broker = await startMosquitto();
    const { ctx, calls } = fakeContext('sensors', { url: broker.url });
    await startSource(ctx);
    const mqtt = await producer(broker);

    const sent = [
      { room: 'garden', body: 'soil is dry', id: 'g1', sender: { kind: 'service', id: 'probe-1' } },
      { room: 'kitchen', body: 'oven on', id: 'k1' },
      { room: 'garden', body: 'watered', id: 'g2', media: ['https://example.com/a.jpg'] },
      { room: 'garden', body: 'soil is wet', id: 'g3', sender: { kind: 'user', id: 'alice' } },
    ];
    for (const { room, ...payload } of sent) await send(mqtt, room, payload);

    await callCount(calls, sent.length);
    expect(calls).toEqual(sent);
  });

  it('takes a plain-text payload as the body, with an id of its own; drops broken JSON', async () => {
    const broker = await startMosquitto();
    const { ctx, calls } = fakeContext('texts', { url: broker.url });
    await startSource(ctx);
    const mqtt = await producer(broker);

    await send(mqtt, 'garden', 'Seedlings are in!');
    await send(mqtt, 'garden', '{"body": "unterminated');
    await send(mqtt, 'garden', { text: 'no body' });
    await send(mqtt, 'garden', '[1, 2] is not an object, so it is text');

    await callCount(calls, 2);
    await quiet();
    expect(calls).toHaveLength(2);
    expect(calls[0]).toEqual({ room: 'garden', body: 'Seedlings are in!', id: expect.any(String) });
    expect(calls[0]?.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(calls[1]?.body).toBe('[1, 2] is not an object, so it is text');
    expect(calls[1]?.id).not.toBe(calls[0]?.id);
  });

  it('gets what was published while it was stopped (persistent session, QoS 1)', async () => {
    const broker = await startMosquitto();
    const first = fakeContext('offline', { url: broker.url });
    const source = await startSource(first.ctx);
    await source.stop();

    const mqtt = await producer(broker);
    await send(mqtt, 'garden', { body: 'sent while nobody listened', id: 'while-stopped' });
    await send(mqtt, 'garden', { body: 'and another', id: 'while-stopped-2' });

    // Another instance of the same source (as on another node after a move): same session.
    const second = fakeContext('offline', { url: broker.url });
    await startSource(second.ctx);
    await callCount(second.calls, 2);
    expect(second.calls.map((m) => m.id)).toEqual(['while-stopped', 'while-stopped-2']);
    expect(first.calls).toHaveLength(0);
  });

  it('retries a publish that is unavailable, in order, and acknowledges it once it went through', async () => {
    const broker = await startMosquitto();
    const { ctx, calls, behave } = fakeContext('retries', { url: broker.url });
    behave((m, call) => {
      if (call <= 3) throw new UnavailableError('Redis is away');
      return accept(m, call);
    });
    const source = await startSource(ctx);
    const mqtt = await producer(broker);
    await send(mqtt, 'garden', { body: 'first', id: 'r1' });
    await send(mqtt, 'garden', { body: 'second', id: 'r2' });

    await callCount(calls, 5);
    expect(calls.map((m) => m.id)).toEqual(['r1', 'r1', 'r1', 'r1', 'r2']);

    // Acknowledged: a new session start gets nothing again.
    await source.stop();
    const again = fakeContext('retries', { url: broker.url });
    await startSource(again.ctx);
    await quiet();
    expect(again.calls).toHaveLength(0);
  });

  it('leaves a message it could not publish with the broker when stopped', async () => {
    const broker = await startMosquitto();
    const { ctx, calls, behave } = fakeContext('held', { url: broker.url });
    behave(() => {
      throw new UnavailableError('Redis is away');
    });
    const source = await startSource(ctx);
    const mqtt = await producer(broker);
    await send(mqtt, 'garden', { body: 'keep me', id: 'h1' });
    await callCount(calls, 1);
    await source.stop();

    const next = fakeContext('held', { url: broker.url });
    await startSource(next.ctx);
    await callCount(next.calls, 1);
    expect(next.calls[0]).toMatchObject({ room: 'garden', body: 'keep me', id: 'h1' });
  });

  it('does not acknowledge on a new connection: a message whose connection dropped comes again, with the same id', async () => {
    const broker = await startMosquitto();
    const { ctx, calls, behave } = fakeContext('restarts', { url: broker.url });
    let release = (): void => {};
    behave((m, call) =>
      call === 1
        ? new Promise((resolve) => (release = () => resolve(accept(m, call))))
        : accept(m, call),
    );
    await startSource(ctx);
    const mqtt = await producer(broker);
    // Plain text: no id of its own, so the source makes one up.
    await send(mqtt, 'garden', 'in flight while the broker restarts');
    await callCount(calls, 1);

    // The broker goes (with the message unacknowledged in the session) and comes back; only
    // then does the first publish resolve: its PUBACK would go on the new connection.
    await broker.restart();
    release();

    await callCount(calls, 2, 10_000);
    expect(calls[1]).toEqual(calls[0]);
    await quiet();
    expect(calls).toHaveLength(2);
  });

  it('drops (acknowledges) a message publish refuses, without holding up the next', async () => {
    const broker = await startMosquitto();
    const { ctx, calls, behave } = fakeContext('refusals', { url: broker.url });
    behave((m, call) => {
      if (m.room === 'nowhere') throw new NotFoundError('no room nowhere');
      return accept(m, call);
    });
    const source = await startSource(ctx);
    const mqtt = await producer(broker);
    await send(mqtt, 'nowhere', { body: 'lost', id: 'n1' });
    await send(mqtt, 'garden', { body: 'next', id: 'n2' });

    await callCount(calls, 2);
    expect(calls.map((m) => m.id)).toEqual(['n1', 'n2']);

    await source.stop();
    const again = fakeContext('refusals', { url: broker.url });
    await startSource(again.ctx);
    await quiet();
    expect(again.calls).toHaveLength(0);
  });

  it('passes the same id each time a message with an id is published again', async () => {
    const broker = await startMosquitto();
    const { ctx, calls, behave } = fakeContext('dupes', { url: broker.url });
    behave((m, call) => ({
      id: `dupes:${m.id}`,
      status: call === 1 ? 'accepted' : 'duplicate',
    }));
    await startSource(ctx);
    const mqtt = await producer(broker);
    await send(mqtt, 'garden', { body: 'once', id: 'same' });
    await send(mqtt, 'garden', { body: 'once', id: 'same' });

    await callCount(calls, 2);
    expect(calls.map((m) => m.id)).toEqual(['same', 'same']);
  });

  it('takes retained messages as they are published, not when a subscription replays them', async () => {
    const broker = await startMosquitto();
    const first = fakeContext('retained', { url: broker.url });
    const source = await startSource(first.ctx);
    const mqtt = await producer(broker);
    const retained = (id: string) =>
      mqtt.publishAsync('threshold/rooms/garden/messages', JSON.stringify({ body: id, id }), {
        qos: 1,
        retain: true,
      });
    await retained('live');
    await callCount(first.calls, 1);
    await source.stop();
    await retained('queued');

    // The session resumes (the queued one arrives); the subscription replays the last
    // retained message, which is not a new one.
    const second = fakeContext('retained', { url: broker.url });
    await startSource(second.ctx);
    await callCount(second.calls, 1);
    await quiet();
    expect(first.calls.map((m) => m.id)).toEqual(['live']);
    expect(second.calls.map((m) => m.id)).toEqual(['queued']);
  });

  it('takes the room from the first + of a custom topic', async () => {
    const broker = await startMosquitto();
    const { ctx, calls } = fakeContext('custom', { url: broker.url, topic: 'site/+/chat/+' });
    await startSource(ctx);
    const mqtt = await producer(broker);
    await mqtt.publishAsync('site/lobby/chat/7', 'hello', { qos: 1 });

    await callCount(calls, 1);
    expect(calls[0]).toMatchObject({ room: 'lobby', body: 'hello' });
  });

  it('refuses bad options with an error naming the option', () => {
    const { ctx } = fakeContext('bad', {});
    const withOptions = (options: Record<string, unknown>) => () =>
      createMqttSource({ ...ctx, options });
    expect(withOptions({ topic: 'threshold/#' })).toThrow(
      expect.objectContaining({
        setting: 'sources.bad.options.topic',
        message: expect.stringMatching(/^source bad: invalid option topic: a # wildcard/),
      }),
    );
    expect(withOptions({ topic: 'threshold/rooms' })).toThrow(/invalid option topic: needs a \+/);
    expect(withOptions({ topic: 'rooms/a+b' })).toThrow(/invalid option topic: \+ must be/);
    expect(withOptions({ qos: 2 })).toThrow(/invalid option qos: must be 0 or 1/);
    expect(withOptions({ url: 'http://broker' })).toThrow(/invalid option url/);
    expect(withOptions({ port: 1883 })).toThrow(/unknown option port \(known: url, topic/);
  });

  it('fails to start when the broker cannot be reached', async () => {
    const port = await freePort();
    const { ctx } = fakeContext('unreachable', { url: `mqtt://127.0.0.1:${port}` });
    const source = createMqttSource(ctx);
    await expect(source.start()).rejects.toThrow(/source unreachable: cannot subscribe/);
    await source.stop();
  });
});
