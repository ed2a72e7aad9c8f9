/**
 * redisReplicaWait on a Redis without replicas (the shared test Redis): every WAIT falls
 * short, so ingress answers 503 and commits are never confirmed, yet every message is
 * stored, and committed once however often the client retries it.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { Funnel, prepareFunnel } from '../../src/funnel/funnel.ts';
import { UnavailableError } from '../../src/errors.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { RedisRoomsStore } from '../../src/rooms/store.ts';
import { eventually } from '../helpers/eventually.ts';
import { serviceEnvelope } from '../helpers/envelope.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import {
  connect,
  deleteKeys,
  startPrivateRedis,
  uniquePrefix,
  useRedis,
} from '../helpers/redis.ts';
import { connect as connectWs } from '../helpers/ws-client.ts';

const redis = defineScripts(useRedis());
const WAIT = { redisReplicaWait: 1, redisReplicaWaitMs: 100 };

async function history(node: TestNode, room: string) {
  const res = await node.admin('GET', `/v1/rooms/${room}/messages?since=0`);
  return ((await res.json()) as { messages: { id: string; seq: number; body: string }[] }).messages;
}

async function duplicates(node: TestNode): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return Number(/^threshold_messages_duplicate_total (\d+)/m.exec(text)?.[1] ?? 0);
}

describe('redisReplicaWait without replicas', () => {
  it('HTTP: 503 problem+json with Retry-After saying the message is stored; it is committed once, and retries with its Idempotency-Key commit nothing more', async () => {
    const node = await startTestNode({ name: 'replica-wait-http', overrides: WAIT });
    await node.createRoom('vault');
    const publish = (wait: boolean) =>
      fetch(`${node.url}/v1/rooms/vault/messages${wait ? '?wait=1' : ''}`, {
        method: 'POST',
        headers: {
          authorization: 'Bearer admin-token',
          'content-type': 'application/json',
          'idempotency-key': 'k-1',
        },
        body: JSON.stringify({ body: 'keep me' }),
      });

    const res = await publish(false);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(res.headers.get('retry-after')).toBe('1');
    const problem = (await res.json()) as { code: string; detail: string };
    expect(problem.code).toBe('unavailable');
    expect(problem.detail).toMatch(
      /stored but not yet copied to 1 Redis replica within 100 ms; retry with the same id/,
    );

    // Stored: the owner commits it, though nobody is told (the commit's receipt is withheld).
    const committed = await eventually(
      'the message committed',
      () => history(node, 'vault'),
      (m) => m.length === 1,
      5_000,
    );
    expect(committed[0]).toMatchObject({ seq: 1, body: 'keep me' });

    // The client retries, as told: still no replica, so 503 again; still one message.
    for (const wait of [false, true]) expect((await publish(wait)).status).toBe(503);
    expect(await history(node, 'vault')).toEqual(committed);
    const text = await (await fetch(`${node.url}/metrics`)).text();
    expect(text).toMatch(/^threshold_commits_unreplicated_total 1$/m);
  });

  it('WebSocket: a publish gets an `unavailable` error frame, no ack; the message is committed once', async () => {
    const node = await startTestNode({ name: 'replica-wait-ws', overrides: WAIT });
    await node.createRoom('vault', ['user:ana']);
    const ws = await connectWs(node.wsUrl, await node.token('user:ana'));
    ws.send({ type: 'publish', room: 'vault', body: 'hello', id: 'c1' });
    expect(await ws.next((f) => f.id === 'c1')).toMatchObject({
      type: 'error',
      code: 'unavailable',
      id: 'c1',
    });
    await eventually(
      'the message committed',
      () => history(node, 'vault'),
      (m) => m.length === 1,
      5_000,
    );
    ws.send({ type: 'publish', room: 'vault', body: 'hello', id: 'c1' });
    expect(await ws.next((f) => f.id === 'c1')).toMatchObject({ code: 'unavailable' });
    expect(await history(node, 'vault')).toHaveLength(1);
  });

  it('an entry stored twice before its commit (a retry after the 503) is committed once: two funnel entries, the second a duplicate', async () => {
    // The funnel alone first, so both entries are there before any node reads them.
    const keys = new Keys(uniquePrefix('replica-wait-twice'), 8);
    onTestFinished(async () => {
      await deleteKeys(redis, keys.prefix);
    });
    await prepareFunnel(redis, keys);
    await new RedisRoomsStore(redis, keys).create({ id: 'vault' });
    const funnel = new Funnel(redis, keys, {
      maxLength: 0,
      replicaWait: { replicas: 1, timeoutMs: 50 },
    });
    const env = serviceEnvelope('vault', 'twice');
    for (let i = 0; i < 2; i++) {
      const err = await funnel.publish(env).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnavailableError);
    }
    expect(await redis.xlen(keys.funnel(keys.partitionOf('vault')))).toBe(2);

    // A node on that prefix commits them: one message, one duplicate.
    const owner = await startTestNode({
      name: 'replica-wait-twice-owner',
      overrides: { ...WAIT, keyPrefix: keys.prefix, partitions: 8 },
    });
    await eventually(
      'both entries processed',
      () => duplicates(owner),
      (n) => n === 1,
      5_000,
    );
    expect((await history(owner, 'vault')).map((m) => [m.seq, m.body])).toEqual([[1, 'twice']]);
  });

  it('with a replica: 201 with its seq (HTTP ?wait=1) and an ack (WebSocket), as without the setting', async () => {
    // prettier-ignore
    const master = await startPrivateRedis({ appendOnly: false, extraArgs: ['--repl-diskless-sync-delay', '0'] });
    // prettier-ignore
    await startPrivateRedis({ appendOnly: false, extraArgs: ['--replicaof', '127.0.0.1', String(master.port)] });
    const probe = connect(master.url);
    try {
      await eventually(
        'the replica online',
        () => probe.info('replication'),
        (i) => /^slave0:.*state=online/m.test(i),
        10_000,
      );
    } finally {
      probe.disconnect();
    }
    const node = await startTestNode({
      name: 'replica-wait-ok',
      // A generous WAIT timeout: on a loaded machine the replica's acknowledgement can take
      // longer than the 100 ms the no-replica tests use to fall short quickly.
      overrides: { redisReplicaWait: 1, redisReplicaWaitMs: 5_000, redisUrl: master.url },
    });
    await node.createRoom('vault', ['user:ana']);
    const res = await node.admin('POST', '/v1/rooms/vault/messages?wait=1', { body: 'copied' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ seq: 1, status: 'committed' });
    const ws = await connectWs(node.wsUrl, await node.token('user:ana'));
    ws.send({ type: 'publish', room: 'vault', body: 'also copied', id: 'c1' });
    expect(await ws.next((f) => f.id === 'c1')).toEqual({ type: 'ack', id: 'c1', seq: 2 });
  });

  it('with the default 0 a publish sends no WAIT at all (standalone behaviour as before)', async () => {
    const server = await startPrivateRedis({ appendOnly: false });
    const node = await startTestNode({
      name: 'replica-wait-off',
      overrides: { redisUrl: server.url },
    });
    await node.createRoom('vault');
    const res = await node.admin('POST', '/v1/rooms/vault/messages?wait=1', { body: 'hi' });
    expect(res.status).toBe(201);
    const probe = connect(server.url);
    try {
      expect(await probe.info('commandstats')).not.toMatch(/cmdstat_wait:/);
    } finally {
      probe.disconnect();
    }
  });
});
