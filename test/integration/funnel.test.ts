import { describe, expect, it, onTestFinished } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { prepareFunnel, RELAY_GROUP } from '../../src/funnel/funnel.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { RedisRoomsStore } from '../../src/rooms/store.ts';
import { serviceEnvelope } from '../helpers/envelope.ts';
import { startTestNode } from '../helpers/node.ts';
import { deleteKeys, uniquePrefix, useRedis } from '../helpers/redis.ts';

const redis = defineScripts(useRedis());
const P = 8;

const envelope = (room: string, body: string) => serviceEnvelope(room, body);

async function deployment(name: string) {
  const prefix = uniquePrefix(name);
  onTestFinished(async () => {
    await deleteKeys(redis, prefix);
  });
  const keys = new Keys(prefix, P);
  await prepareFunnel(redis, keys);
  return { prefix, keys };
}

describe('funnel', () => {
  it('commits the entries a vanished consumer left pending before newer ones, in funnel order', async () => {
    const { prefix, keys } = await deployment('funnel pending first');
    await new RedisRoomsStore(redis, keys).create({ id: 'orchard' });
    const funnel = keys.funnel(keys.partitionOf('orchard'));
    for (const body of ['m1', 'm2', 'm3'])
      await redis.xadd(funnel, '*', 'e', JSON.stringify(envelope('orchard', body)));
    // A node read these and died before committing them: they sit in its pending list.
    await redis.xreadgroup(
      'GROUP',
      RELAY_GROUP,
      'crashed-node',
      'COUNT',
      10,
      'STREAMS',
      funnel,
      '>',
    );
    for (const body of ['m4', 'm5'])
      await redis.xadd(funnel, '*', 'e', JSON.stringify(envelope('orchard', body)));

    const node = await startTestNode({
      name: 'pending',
      overrides: { keyPrefix: prefix, partitions: P },
    });
    await eventually(
      'five commits',
      async () => Number(await redis.get(keys.seq('orchard'))),
      (n) => n === 5,
      5000,
    );
    const res = await node.admin('GET', '/v1/rooms/orchard/messages?since=0');
    const { messages } = (await res.json()) as { messages: { seq: number; body: string }[] };
    expect(messages.map((m) => [m.seq, m.body])).toEqual([
      [1, 'm1'],
      [2, 'm2'],
      [3, 'm3'],
      [4, 'm4'],
      [5, 'm5'],
    ]);
    const [pending] = (await redis.xpending(funnel, RELAY_GROUP)) as [number];
    expect(pending).toBe(0);
  });

  it('reclaims an entry another consumer read and never committed (a stale owner), and commits it', async () => {
    const { prefix, keys } = await deployment('funnel stranded');
    const node = await startTestNode({
      name: 'stranded',
      overrides: {
        keyPrefix: prefix,
        partitions: P,
        mesh: { heartbeatMs: 100, leaseTtlMs: 600, nodeTtlMs: 600 },
      },
    });
    await node.createRoom('cellar');
    const funnel = keys.funnel(keys.partitionOf('cellar'));
    // In one transaction, so the owner cannot read it first: another consumer of the group
    // (one that vanished, or a node of a version that did not fence its reads) holds it.
    await redis
      .multi()
      .xadd(funnel, '*', 'e', JSON.stringify(envelope('cellar', 'stranded')))
      .xreadgroup('GROUP', RELAY_GROUP, 'stale-owner', 'COUNT', 1, 'STREAMS', funnel, '>')
      .exec();
    await eventually(
      'the commit',
      async () => Number(await redis.get(keys.seq('cellar'))),
      (n) => n === 1,
      5000,
    );
    const [pending] = (await redis.xpending(funnel, RELAY_GROUP)) as [number];
    expect(pending).toBe(0);
  });

  it('a read under a lease that is not ours takes nothing: the entry stays for the owner', async () => {
    const { keys } = await deployment('funnel fenced read');
    const p = keys.partitionOf('cellar');
    await redis.set(keys.lease(p), 'new-owner:8', 'PX', 5000);
    await redis.xadd(keys.funnel(p), '*', 'e', JSON.stringify(envelope('cellar', 'hi')));
    // A former owner (token 7) wakes up and reads: refused, and nothing moved to its pending list.
    // prettier-ignore
    const stale = await redis.readFenced(keys.lease(p), keys.funnel(p), 'old-owner:7', RELAY_GROUP, 'old-owner', 10, '>');
    expect(stale).toBe(-1);
    const [pending] = (await redis.xpending(keys.funnel(p), RELAY_GROUP)) as [number];
    expect(pending).toBe(0);
    // prettier-ignore
    const owner = await redis.readFenced(keys.lease(p), keys.funnel(p), 'new-owner:8', RELAY_GROUP, 'new-owner', 10, '>');
    expect(owner).not.toBe(-1);
    const [entries] = owner as [[string, string[]][], string];
    expect(entries).toHaveLength(1);
    expect(entries[0]?.[1]).toEqual(['e', expect.stringContaining('"body":"hi"')]);
  });

  it('dead-letters an entry that is not an envelope, and the partition keeps flowing', async () => {
    const { prefix, keys } = await deployment('funnel poison');
    const node = await startTestNode({
      name: 'poison',
      overrides: { keyPrefix: prefix, partitions: P },
    });
    await node.createRoom('pantry');
    await redis.xadd(keys.funnel(keys.partitionOf('pantry')), '*', 'e', '{"not":"an envelope"}');
    const res = await node.admin('POST', '/v1/rooms/pantry/messages?wait=1', {
      body: 'after the poison',
    });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { seq: number }).seq).toBe(1);
    const dead = await redis.xrange(keys.dead, '-', '+');
    expect(dead).toHaveLength(1);
    const fields = dead[0]?.[1] ?? [];
    expect(fields[fields.indexOf('reason') + 1]).toBe('invalid_envelope');
    expect(fields[fields.indexOf('e') + 1]).toBe('{"not":"an envelope"}');
  });

  it("a room whose commit keeps failing holds up only its own partition: other rooms' messages commit without waiting for its retries", async () => {
    const { prefix, keys } = await deployment('funnel retry pause');
    const node = await startTestNode({
      name: 'retry-pause',
      overrides: { keyPrefix: prefix, partitions: P, mesh: { maxAttempts: 1000 } },
    });
    await node.createRoom('cellar');
    const quick = ['pantry', 'larder', 'scullery', 'buttery'].find(
      (r) => keys.partitionOf(r) !== keys.partitionOf('cellar'),
    )!;
    await node.createRoom(quick);
    // The commit of this entry fails at its first command (its seen marker is not a string),
    // so it is handed back for a retry, round after round.
    const stuck = envelope('cellar', 'stuck');
    const p = keys.partitionOf('cellar');
    await redis.hset(keys.seen(p, stuck.id), 'not', 'a string');
    await redis.xadd(keys.funnel(p), '*', 'e', JSON.stringify(stuck));
    await eventually(
      'the entry read (its commit then fails, round after round)',
      async () => Number(((await redis.xpending(keys.funnel(p), RELAY_GROUP)) as [number])[0]),
      (n) => n === 1,
      5000,
    );

    const tookMs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      const res = await node.admin('POST', `/v1/rooms/${quick}/messages?wait=1`, { body: `m${i}` });
      expect(res.status).toBe(201);
      tookMs.push(performance.now() - started);
    }
    // When the whole consumer paused 100 ms after every retry, each of them waited about that.
    const median = tookMs.sort((a, b) => a - b)[5]!;
    expect(median).toBeLessThan(50);
    // Meanwhile the stuck entry was still being retried, neither committed nor dead-lettered...
    expect(await redis.xlen(keys.dead)).toBe(0);
    expect(await redis.get(keys.seq('cellar'))).toBeNull();
    // ...and once its obstacle is gone it commits: nothing was lost.
    await redis.del(keys.seen(p, stuck.id));
    await eventually(
      'the stuck entry committed',
      async () => Number(await redis.get(keys.seq('cellar'))),
      (n) => n === 1,
      5000,
    );
  });

  it('answers 503 with Retry-After once a partition holds its limit of entries', async () => {
    const { prefix } = await deployment('funnel full');
    const node = await startTestNode({
      name: 'full',
      overrides: { keyPrefix: prefix, partitions: P, mesh: { maxFunnelLength: 2 } },
    });
    await node.createRoom('larder');
    // Committed entries stay until the next trim (every 5 s by default), so two fill it.
    for (const body of ['one', 'two']) {
      expect((await node.admin('POST', '/v1/rooms/larder/messages?wait=1', { body })).status).toBe(
        201,
      );
    }
    const full = await node.admin('POST', '/v1/rooms/larder/messages', { body: 'three' });
    expect(full.status).toBe(503);
    expect(full.headers.get('retry-after')).toBe('1');
    expect(((await full.json()) as { detail: string }).detail).toMatch(/funnel partition is full/);
  });

  it('trims acknowledged entries once committed', async () => {
    const { prefix, keys } = await deployment('funnel trim node');
    const node = await startTestNode({
      name: 'trim',
      overrides: { keyPrefix: prefix, partitions: P, mesh: { trimIntervalMs: 100 } },
    });
    await node.createRoom('attic');
    for (let i = 0; i < 20; i++) {
      expect(
        (await node.admin('POST', '/v1/rooms/attic/messages?wait=1', { body: `n${i}` })).status,
      ).toBe(201);
    }
    const funnel = keys.funnel(keys.partitionOf('attic'));
    // The last delivered entry stays (trimming is strictly below it); the 19 before it go.
    await eventually(
      'the trim',
      () => redis.xlen(funnel),
      (n) => n <= 1,
      5000,
    );
  });

  it('the trim script never removes an entry that is read but not acknowledged, or not read yet', async () => {
    const { keys } = await deployment('funnel trim script');
    const funnel = keys.funnel(0);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await redis.xadd(funnel, '*', 'e', `x${i}`)) as string);
    await redis.xreadgroup('GROUP', RELAY_GROUP, 'c', 'COUNT', 5, 'STREAMS', funnel, '>');
    await redis.xack(funnel, RELAY_GROUP, ids[0] as string, ids[1] as string);
    expect(await redis.trimFunnel(funnel, RELAY_GROUP)).toEqual([2, 3, 0]);
    expect((await redis.xrange(funnel, '-', '+')).map(([id]) => id)).toEqual(ids.slice(2));

    await redis.xadd(funnel, '*', 'e', 'unread-1');
    await redis.xadd(funnel, '*', 'e', 'unread-2');
    expect(await redis.trimFunnel(funnel, RELAY_GROUP)).toEqual([0, 3, 2]);
    expect(await redis.xlen(funnel)).toBe(5);
  });
});
