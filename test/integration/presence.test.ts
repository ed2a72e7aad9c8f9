import { describe, expect, it, onTestFinished } from 'vitest';
import { Presence } from '../../src/delivery/presence.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode, type TestNode, useTestNode } from '../helpers/node.ts';
import { connect as connectRedis, deleteKeys, uniquePrefix } from '../helpers/redis.ts';
import { connect, type Frame } from '../helpers/ws-client.ts';

async function presenceOf(node: TestNode, room: string, member?: string) {
  const res = member
    ? await fetch(`${node.url}/v1/rooms/${room}/presence`, {
        headers: { authorization: `Bearer ${await node.token(member)}` },
      })
    : await node.admin('GET', `/v1/rooms/${room}/presence`);
  return { status: res.status, body: (await res.json()) as { room: string; online: string[] } };
}

/** Polls the route until the room's online members are `online`. */
function waitOnline(node: TestNode, room: string, online: string[]) {
  return eventually(
    `${room} online = [${online.join(', ')}]`,
    async () => (await presenceOf(node, room)).body.online,
    (o) => o.join(',') === online.join(','),
    5_000,
  );
}

/** Keys under a prefix of their own and a client with the scripts, cleaned up after the test. */
function ownKeys(name: string) {
  const prefix = uniquePrefix(name);
  const keys = new Keys(prefix, 8);
  const redis = defineScripts(connectRedis());
  onTestFinished(async () => {
    await deleteKeys(redis, prefix);
    await redis.quit();
  });
  return { keys, redis };
}

const isPresence = (member: string, online: boolean) => (f: Frame) =>
  f.type === 'presence' && f.member === member && f.online === online;

describe('presence', () => {
  const node = useTestNode({ name: 'presence' });

  it('a member is online while one of their WebSockets is open, offline once the last one closes', async () => {
    const n = node();
    await n.createRoom('pres-two', ['user:pres-ann', 'user:pres-ben']);
    expect(await presenceOf(n, 'pres-two')).toEqual({
      status: 200,
      body: { room: 'pres-two', online: [] },
    });

    const first = await connect(n.wsUrl, await n.token('user:pres-ann'));
    await first.welcome;
    await waitOnline(n, 'pres-two', ['user:pres-ann']);
    const second = await connect(n.wsUrl, await n.token('user:pres-ann'));
    await second.welcome;
    const ben = await connect(n.wsUrl, await n.token('user:pres-ben'));
    await ben.welcome;
    await waitOnline(n, 'pres-two', ['user:pres-ann', 'user:pres-ben']);

    // A member of the room may ask too.
    expect((await presenceOf(n, 'pres-two', 'user:pres-ben')).body.online).toEqual([
      'user:pres-ann',
      'user:pres-ben',
    ]);

    await first.close();
    // Still one socket open: still online.
    await new Promise((r) => setTimeout(r, 200));
    expect((await presenceOf(n, 'pres-two')).body.online).toEqual([
      'user:pres-ann',
      'user:pres-ben',
    ]);
    await second.close();
    await waitOnline(n, 'pres-two', ['user:pres-ben']);
    await ben.close();
    await waitOnline(n, 'pres-two', []);
  });

  it("a room's subscribers get presence frames: online, then offline after the last socket closes", async () => {
    const n = node();
    await n.createRoom('pres-frames', ['user:pres-cat', 'user:pres-dan']);
    const cat = await connect(n.wsUrl, await n.token('user:pres-cat'));
    cat.send({ type: 'subscribe', room: 'pres-frames' });
    await cat.next((f) => f.type === 'subscribed');

    const dan1 = await connect(n.wsUrl, await n.token('user:pres-dan'));
    expect(await cat.next(isPresence('user:pres-dan', true))).toEqual({
      type: 'presence',
      room: 'pres-frames',
      member: 'user:pres-dan',
      online: true,
    });
    const dan2 = await connect(n.wsUrl, await n.token('user:pres-dan'));
    await dan2.welcome;
    await dan1.close();
    await dan2.close();
    await cat.next(isPresence('user:pres-dan', false));
    // One frame each way: the second socket opening and the first closing changed nothing.
    expect(cat.frames.filter((f) => f.type === 'presence' && f.member === 'user:pres-dan')).toEqual(
      [
        { type: 'presence', room: 'pres-frames', member: 'user:pres-dan', online: true },
        { type: 'presence', room: 'pres-frames', member: 'user:pres-dan', online: false },
      ],
    );
  });

  it('answers 403 to a non-member, 404 for an unknown room', async () => {
    const n = node();
    await n.createRoom('pres-closed', ['user:pres-eve']);
    expect((await presenceOf(n, 'pres-closed', 'user:pres-mallory')).status).toBe(403);
    expect((await presenceOf(n, 'pres-nowhere')).status).toBe(404);
    expect((await presenceOf(n, 'pres-nowhere', 'user:pres-eve')).status).toBe(404);
  });
});

describe('presence on stop, crash and restart', () => {
  it("a node that stops clears its members' presence before it leaves", async () => {
    const n = await startTestNode({ name: 'presence-stop' });
    await n.createRoom('pres-stop', ['user:pres-fay']);
    const fay = await connect(n.wsUrl, await n.token('user:pres-fay'));
    await fay.welcome;
    await waitOnline(n, 'pres-stop', ['user:pres-fay']);
    const keys = new Keys(n.prefix, n.config.partitions);
    const redis = connectRedis();
    onTestFinished(async () => {
      await redis.quit();
    });
    expect(await redis.hkeys(keys.presence('user:pres-fay'))).toEqual([n.node.id]);

    await n.node.stop();
    expect(await redis.hkeys(keys.presence('user:pres-fay'))).toEqual([]);
    expect(await redis.scard(keys.presenceNode(n.node.id))).toBe(0);
  });

  it("sweeps a gone node's members (offline frame), and a node id's leftovers when it starts again", async () => {
    const { keys, redis } = ownKeys('presence-sweep');
    const sub = connectRedis();
    onTestFinished(async () => {
      await sub.quit();
    });
    const log = createLogger('silent');
    const presence = (nodeId: string) =>
      new Presence(redis, keys, { nodeId, nodeTtlMs: 3000 }, new Metrics(), log);
    await redis.sadd(keys.memberRooms('user:gil'), 'garden');
    await redis.sadd(keys.members('garden'), 'user:gil');
    const frames: string[] = [];
    sub.on('message', (_channel: string, payload: string) => frames.push(payload));
    await sub.subscribe(keys.live('garden'));

    const ghost = presence('ghost');
    const survivor = presence('survivor');
    survivor.onLive(['ghost', 'survivor']);
    await ghost.connected('user:gil');
    expect(await survivor.online(['user:gil', 'user:nobody', 'phone:+15550100'])).toEqual([
      true,
      false,
      false,
    ]);
    expect(await survivor.room('garden')).toEqual(['user:gil']);

    // The ghost stops heartbeating: not live any more, so its field no longer counts, and the
    // survivor sweeps it.
    survivor.onLive(['survivor']);
    expect(await survivor.online(['user:gil'])).toEqual([false]);
    await eventually(
      'the sweep',
      () => redis.hkeys(keys.presence('user:gil')),
      (fields) => fields.length === 0,
    );
    expect(await redis.scard(keys.presenceNode('ghost'))).toBe(0);
    await eventually(
      'the offline frame',
      async () => frames,
      (f) => f.length === 2,
    );
    expect(frames.map((f) => JSON.parse(f) as unknown)).toEqual([
      { type: 'presence', room: 'garden', member: 'user:gil', online: true },
      { type: 'presence', room: 'garden', member: 'user:gil', online: false },
    ]);

    // A crash leaves fields behind; the same id starting again clears them before anything else.
    const crashed = presence('reused');
    await crashed.connected('user:gil');
    expect(await redis.hkeys(keys.presence('user:gil'))).toEqual(['reused']);
    const restarted = presence('reused');
    await restarted.start();
    expect(await redis.hkeys(keys.presence('user:gil'))).toEqual([]);
    await restarted.connected('user:gil');
    expect(await redis.hget(keys.presence('user:gil'), 'reused')).toBe('1');
  });

  it("a member's burst of connections writes their presence once or twice, not once per connection", async () => {
    const { keys, redis } = ownKeys('presence-burst');
    // Counts the presence writes through a view of the client (the client itself untouched:
    // on a Redis Cluster its commands go through ioredis's auto-pipelining).
    let writes = 0;
    const counted = new Proxy(redis, {
      get(target, name) {
        if (name === 'setPresence')
          return (...args: Parameters<typeof target.setPresence>) => {
            writes++;
            return target.setPresence(...args);
          };
        const value: unknown = Reflect.get(target, name, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const presence = new Presence(
      counted,
      keys,
      { nodeId: 'busy', nodeTtlMs: 3000 },
      new Metrics(),
      createLogger('silent'),
    );
    // 200 connections at once share the write that was queued and not started yet.
    await Promise.all(Array.from({ length: 200 }, () => presence.connected('user:ida')));
    expect(await redis.hget(keys.presence('user:ida'), 'busy')).toBe('200');
    expect(writes).toBeLessThanOrEqual(2);
    // Half close one by one while a write is in flight: those behind it share one more.
    const closing: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) {
      closing.push(presence.disconnected('user:ida'));
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(closing);
    expect(await redis.hget(keys.presence('user:ida'), 'busy')).toBe('100');
    expect(writes).toBeLessThan(2 + 100);
    await Promise.all(Array.from({ length: 100 }, () => presence.disconnected('user:ida')));
    expect(await redis.hkeys(keys.presence('user:ida'))).toEqual([]);
  });

  it('a node silent past the node ttl (swept by its peers meanwhile) writes its members again', async () => {
    const { keys, redis } = ownKeys('presence-pause');
    const log = createLogger('silent');
    const paused = new Presence(
      redis,
      keys,
      { nodeId: 'paused', nodeTtlMs: 50 },
      new Metrics(),
      log,
    );
    const peer = new Presence(redis, keys, { nodeId: 'peer', nodeTtlMs: 50 }, new Metrics(), log);
    paused.onLive(['paused', 'peer']);
    peer.onLive(['paused', 'peer']);
    await paused.connected('user:hal');
    expect(await peer.online(['user:hal'])).toEqual([true]);

    // The paused node misses its heartbeats: the peer drops and sweeps it.
    await new Promise((r) => setTimeout(r, 100));
    peer.onLive(['peer']);
    await eventually(
      'the sweep',
      () => redis.hkeys(keys.presence('user:hal')),
      (fields) => fields.length === 0,
    );
    // It wakes up, heartbeats, and puts its member back.
    paused.onLive(['paused', 'peer']);
    peer.onLive(['paused', 'peer']);
    await eventually(
      'presence written again',
      () => peer.online(['user:hal']),
      ([online]) => online === true,
    );
    expect(await redis.sismember(keys.presenceNode('paused'), 'user:hal')).toBe(1);
  });
});
