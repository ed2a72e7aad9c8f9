import { describe, expect, it, onTestFinished } from 'vitest';
import { ENVELOPE_VERSION, type Envelope } from '../../src/funnel/envelope.ts';
import { RELAY_GROUP } from '../../src/funnel/funnel.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { commitBatchArgs } from '../../src/rooms/committer.ts';
import { Code } from '../../src/redis/codes.ts';
import { deleteKeys, uniquePrefix, useRedis } from '../helpers/redis.ts';

const { OK: COMMITTED, ALREADY: DUPLICATE, FENCED, NO_ROOM, OUT_OF_ORDER, UNPLANNED } = Code;
/** Users over the live path; phones texted by the SMS channel while the room has numbers. */
const ROUTES = JSON.stringify({ user: ['', ''], phone: ['sms', 'numbers'] });
const CONSUMER = 'node-a';
const ROOM = 'lobby';
const TTL = 30_000;

const redis = defineScripts(useRedis());

/** A fresh deployment under its own prefix: the room's partition with its group, and the room. */
async function deployment(name: string, { room = true } = {}) {
  const prefix = uniquePrefix(name);
  onTestFinished(async () => {
    await deleteKeys(redis, prefix);
  });
  const keys = new Keys(prefix, 8);
  const p = keys.partitionOf(ROOM);
  await redis.xgroup('CREATE', keys.funnel(p), RELAY_GROUP, '0', 'MKSTREAM');
  if (room) {
    await redis.hset(keys.room(ROOM), { createdAt: Date.now(), name: ROOM });
    await redis.sadd(keys.members(ROOM), 'user:alice', 'user:bob');
  }

  let n = 0;
  const envelope = (id = `http:user:alice:m${++n}`): Envelope => ({
    v: ENVELOPE_VERSION,
    id,
    room: ROOM,
    source: 'http',
    sender: { kind: 'user', id: 'alice' },
    body: `hello ${id}`,
    kind: 'chat',
    origin: { node: CONSUMER },
    receivedAt: Date.now(),
  });

  /** XADDs the envelope and reads it as the consumer, so it is pending like a real one. */
  const enqueue = async (env: Envelope): Promise<string> => {
    await redis.xadd(keys.funnel(p), '*', 'e', JSON.stringify(env));
    const reply = (await redis.xreadgroup(
      'GROUP',
      RELAY_GROUP,
      CONSUMER,
      'COUNT',
      1,
      'STREAMS',
      keys.funnel(p),
      '>',
    )) as [string, [string, string[]][]][];
    const id = reply[0]?.[1][0]?.[0];
    if (!id) throw new Error('the funnel entry was not read');
    return id;
  };

  /** Commits a batch of one: its { code, seq, recipients }. */
  const commit = async (env: Envelope, entryId: string, lease: string, previousEntry = '') => {
    const [reply] = await redis.commitBatch(
      ...commitBatchArgs(
        keys,
        p,
        lease,
        [{ env, entryId, previousEntry }],
        { historyLength: 1000, dedupeTtlMs: TTL },
        Date.now(),
        ROUTES,
      ),
    );
    if (!reply) throw new Error('no reply for the entry');
    return reply;
  };

  const acquire = (node: string) =>
    redis.acquireLease(keys.lease(p), keys.leaseToken(p), node, TTL);
  const pending = async () => ((await redis.xpending(keys.funnel(p), RELAY_GROUP)) as [number])[0];

  return { keys, p, envelope, enqueue, commit, acquire, pending };
}

describe('commit-message script', () => {
  it('commits with our lease: seq 1, 2, 3 and history entries 1-0, 2-0, 3-0', async () => {
    const d = await deployment('commit-seq');
    const lease = await d.acquire(CONSUMER);
    expect(lease).toBe(`${CONSUMER}:1`);

    const seqs: number[] = [];
    const envs: Envelope[] = [];
    for (let i = 0; i < 3; i++) {
      const env = d.envelope();
      envs.push(env);
      const [status, seq, recipients] = await d.commit(env, await d.enqueue(env), lease as string);
      expect(status).toBe(COMMITTED);
      // alice (the sender) and bob are members; the sender is not a recipient.
      expect(recipients).toBe(1);
      seqs.push(seq);
    }
    expect(seqs).toEqual([1, 2, 3]);
    expect(await redis.get(d.keys.seq(ROOM))).toBe('3');

    const history = await redis.xrange(d.keys.history(ROOM), '-', '+');
    expect(history.map(([id]) => id)).toEqual(['1-0', '2-0', '3-0']);
    history.forEach(([, fields], i) => {
      expect(fields[0]).toBe('m');
      expect(JSON.parse(fields[1] as string)).toMatchObject({
        type: 'message',
        room: ROOM,
        seq: i + 1,
        id: envs[i]?.id,
        body: envs[i]?.body,
        sender: { kind: 'user', id: 'alice' },
      });
    });
    const receipt = await redis.hgetall(d.keys.msg(d.p, envs[2]?.id as string));
    expect(receipt).toMatchObject({ room: ROOM, seq: '3', status: 'committed', recipients: '1' });
    expect(await redis.get(d.keys.seen(d.p, envs[2]?.id as string))).toBe('3');
  });

  it('acknowledges the funnel entry it commits', async () => {
    const d = await deployment('commit-ack');
    const lease = (await d.acquire(CONSUMER)) as string;
    const env = d.envelope();
    const entry = await d.enqueue(env);
    expect(await d.pending()).toBe(1);
    const [status] = await d.commit(env, entry, lease);
    expect(status).toBe(COMMITTED);
    expect(await d.pending()).toBe(0);
  });

  it('answers a second commit of the same envelope id as a duplicate with the original seq', async () => {
    const d = await deployment('commit-dedupe');
    const lease = (await d.acquire(CONSUMER)) as string;
    const first = d.envelope('http:user:alice:same-key');
    const other = d.envelope();
    expect(await d.commit(first, await d.enqueue(first), lease)).toEqual([COMMITTED, 1, 1]);
    expect(await d.commit(other, await d.enqueue(other), lease)).toEqual([COMMITTED, 2, 1]);

    // A client retry: a new funnel entry carrying the same envelope id.
    const retry = await d.enqueue({ ...first, receivedAt: Date.now() + 1 });
    expect(await d.pending()).toBe(1);
    expect(await d.commit(first, retry, lease)).toEqual([DUPLICATE, 1, 1]);
    expect(await redis.get(d.keys.seq(ROOM))).toBe('2');
    expect(await redis.xlen(d.keys.history(ROOM))).toBe(2);
    expect(await d.pending()).toBe(0);
  });

  it('is fenced with another lease value: returns -1 and writes nothing', async () => {
    const d = await deployment('commit-fenced');
    const ours = (await d.acquire(CONSUMER)) as string;
    const env = d.envelope();
    const entry = await d.enqueue(env);

    for (const stale of [`${CONSUMER}:999`, 'node-b:1', '']) {
      expect(await d.commit(env, entry, stale)).toEqual([FENCED, 0, 0]);
    }
    expect(await redis.get(d.keys.seq(ROOM))).toBeNull();
    expect(await redis.exists(d.keys.history(ROOM))).toBe(0);
    expect(await redis.exists(d.keys.seen(d.p, env.id))).toBe(0);
    expect(await redis.exists(d.keys.msg(d.p, env.id))).toBe(0);
    expect(await d.pending()).toBe(1);

    // The rightful owner still commits it afterwards.
    expect(await d.commit(env, entry, ours)).toEqual([COMMITTED, 1, 1]);
    expect(await d.pending()).toBe(0);
  });

  it('is fenced once another node has taken the lease over', async () => {
    const d = await deployment('commit-takeover');
    const old = (await d.acquire(CONSUMER)) as string;
    await redis.del(d.keys.lease(d.p)); // the old lease expired
    expect(await d.acquire('node-b')).toBe('node-b:2');
    const env = d.envelope();
    expect(await d.commit(env, await d.enqueue(env), old)).toEqual([FENCED, 0, 0]);
    expect(await redis.get(d.keys.seq(ROOM))).toBeNull();
  });

  it('returns -2 for a room that does not exist and writes nothing', async () => {
    const d = await deployment('commit-no-room', { room: false });
    const lease = (await d.acquire(CONSUMER)) as string;
    const env = d.envelope();
    expect(await d.commit(env, await d.enqueue(env), lease)).toEqual([NO_ROOM, 0, 0]);
    expect(await redis.get(d.keys.seq(ROOM))).toBeNull();
    expect(await redis.exists(d.keys.history(ROOM))).toBe(0);
    expect(await redis.exists(d.keys.seen(d.p, env.id))).toBe(0);
    // Left pending: the committer dead-letters and acknowledges it.
    expect(await d.pending()).toBe(1);
  });

  it("refuses (-3) to commit an entry while the same room's previous entry is still pending", async () => {
    const d = await deployment('commit-order');
    const lease = (await d.acquire(CONSUMER)) as string;
    const first = d.envelope();
    const second = d.envelope();
    const firstEntry = await d.enqueue(first);
    const secondEntry = await d.enqueue(second);
    // The first one's commit failed (say, mid-pipeline): the second must not overtake it.
    expect(await d.commit(second, secondEntry, lease, firstEntry)).toEqual([OUT_OF_ORDER, 0, 0]);
    expect(await redis.get(d.keys.seq(ROOM))).toBeNull();
    expect(await d.commit(first, firstEntry, lease)).toEqual([COMMITTED, 1, 1]);
    expect(await d.commit(second, secondEntry, lease, firstEntry)).toEqual([COMMITTED, 2, 1]);
  });

  it('refuses (UNPLANNED) to commit without an SMS plan to a room that has numbers, and writes nothing', async () => {
    const d = await deployment('commit-unplanned');
    const lease = (await d.acquire(CONSUMER)) as string;
    await redis.hset(d.keys.room(ROOM), 'numbers', JSON.stringify(['+15550001111']));
    const env = d.envelope();
    expect(await d.commit(env, await d.enqueue(env), lease)).toEqual([UNPLANNED, 0, 0]);
    expect(await redis.get(d.keys.seq(ROOM))).toBeNull();
    expect(await redis.exists(d.keys.seen(d.p, env.id))).toBe(0);
    expect(await d.pending()).toBe(1);
  });

  it("commits a partition's batch in one call: an entry whose commit fails (FAILED, with the error) holds back only its own room", async () => {
    const d = await deployment('commit-batch');
    const lease = (await d.acquire(CONSUMER)) as string;
    // Another room of the same partition, whose history length is not a number: its XADD fails.
    let broken = 'broken-0';
    for (let i = 1; d.keys.partitionOf(broken) !== d.p; i++) broken = `broken-${i}`;
    await redis.hset(d.keys.room(broken), { name: broken, historyLength: 'lots' });
    await redis.sadd(d.keys.members(broken), 'user:alice', 'user:bob');
    const m1 = d.envelope();
    const b1 = { ...d.envelope(), room: broken };
    const b2 = { ...d.envelope(), room: broken };
    const m2 = d.envelope();
    const ids: string[] = [];
    for (const env of [m1, b1, b2, m2]) ids.push(await d.enqueue(env));
    const [i1, i2, i3, i4] = ids as [string, string, string, string];
    const replies = await redis.commitBatch(
      ...commitBatchArgs(
        d.keys,
        d.p,
        lease,
        [
          { env: m1, entryId: i1 },
          { env: b1, entryId: i2 },
          { env: b2, entryId: i3, previousEntry: i2 },
          { env: m2, entryId: i4, previousEntry: i1 },
        ],
        { historyLength: 1000, dedupeTtlMs: TTL },
        Date.now(),
        ROUTES,
      ),
    );
    expect(replies[0]).toEqual([COMMITTED, 1, 1]);
    expect(replies[1]?.[0]).toBe(Code.FAILED);
    expect(String(replies[1]?.[2])).toMatch(/XADD|argument|integer|string/i);
    // The broken room's next entry may not overtake the one that failed.
    expect(replies[2]).toEqual([OUT_OF_ORDER, 0, 0]);
    expect(replies[3]).toEqual([COMMITTED, 2, 1]);
    // Both of the broken room's entries stay pending, to be retried (or dead-lettered).
    expect(await d.pending()).toBe(2);
  });
});

describe('lease scripts', () => {
  it('acquire gives <node>:<token> with an increasing token', async () => {
    const d = await deployment('lease-acquire', { room: false });
    const first = await d.acquire('node-a');
    expect(first).toBe('node-a:1');
    expect(await redis.get(d.keys.lease(d.p))).toBe('node-a:1');
    expect(await redis.pttl(d.keys.lease(d.p))).toBeGreaterThan(TTL - 5_000);

    expect(await redis.releaseLease(d.keys.lease(d.p), 'node-a:1')).toBe(1);
    expect(await d.acquire('node-b')).toBe('node-b:2');
    expect(await redis.releaseLease(d.keys.lease(d.p), 'node-b:2')).toBe(1);
    expect(await d.acquire('node-a')).toBe('node-a:3');
    // A restarted node takes its own lease back at once, with a new token.
    expect(await d.acquire('node-a')).toBe('node-a:4');
  });

  it('a second node cannot acquire a lease that is held', async () => {
    const d = await deployment('lease-held', { room: false });
    expect(await d.acquire('node-a')).toBe('node-a:1');
    expect(await d.acquire('node-b')).toBeNull();
    // A node id that merely starts with the holder's id is another node.
    expect(await d.acquire('node')).toBeNull();
    expect(await d.acquire('node-a2')).toBeNull();
    expect(await redis.get(d.keys.lease(d.p))).toBe('node-a:1');
  });

  it('renew extends our lease and fails after another node took it over', async () => {
    const d = await deployment('lease-renew', { room: false });
    const lease = d.keys.lease(d.p);
    const a = (await d.acquire('node-a')) as string;
    await redis.pexpire(lease, 1_000);
    expect(await redis.renewLease(lease, a, TTL)).toBe(1);
    expect(await redis.pttl(lease)).toBeGreaterThan(TTL - 5_000);

    await redis.del(lease); // expired
    const b = (await d.acquire('node-b')) as string;
    expect(b).toBe('node-b:2');
    expect(await redis.renewLease(lease, a, TTL)).toBe(0);
    expect(await redis.get(lease)).toBe(b);
    expect(await redis.renewLease(lease, b, TTL)).toBe(1);
  });

  it('release by a node that does not hold the lease does nothing', async () => {
    const d = await deployment('lease-release', { room: false });
    const lease = d.keys.lease(d.p);
    const a = (await d.acquire('node-a')) as string;
    expect(await redis.releaseLease(lease, 'node-b:1')).toBe(0);
    expect(await redis.releaseLease(lease, 'node-a:0')).toBe(0);
    expect(await redis.get(lease)).toBe(a);
    expect(await redis.releaseLease(lease, a)).toBe(1);
    expect(await redis.exists(lease)).toBe(0);
  });
});
