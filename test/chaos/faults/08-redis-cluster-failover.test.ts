/**
 * Scenario 8: a Redis Cluster master (3 masters, 1 replica each) is SIGKILLed under load,
 * the one holding the mesh's membership. Its replica takes over after cluster-node-timeout
 * (2 s here); the killed server is started again 2 s later, as its supervisor would, and
 * rejoins as the new master's replica. The relay nodes follow by themselves and keep
 * committing. What an acknowledged publish may lose depends on redisReplicaWait and on how
 * far behind the replica was: with 1, ingress acknowledges only what a replica holds (WAIT),
 * so nothing either way; with 0 (the default), whatever the master had acknowledged and not
 * yet sent: next to nothing to a healthy replica on the same machine, the last half second
 * to a replica 500 ms behind. These runs are the README's "Durability on a Redis Cluster".
 */
import { Cluster, Redis } from 'ioredis';
import { describe, expect, it, onTestFailed, onTestFinished } from 'vitest';
import { serverOf } from '../../../src/redis/client.ts';
import { Keys } from '../../../src/redis/keys.ts';
import { sleep, TestMesh, waitReady } from '../../helpers/mesh.ts';
import { type TestRedisCluster, startRedisCluster } from '../../helpers/redis-cluster.ts';
import { createRooms, underLoad } from '../../helpers/room-load.ts';
import { figures, length } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures, type HistoryCheck } from '../history.ts';

const ROOMS = 24;
/** Load before the kill, and after the killed server is back as a replica. */
const BEFORE_MS = 3_000;
const AFTER_MS = length(15_000, 8_000);
/** How far behind its master the replica is when the master dies, in the lagging-replica cases. */
const BEHIND_MS = 500;
/** How long the promoted replica runs without a replica of its own before the old master returns. */
const ALONE_MS = 2_000;

interface Run {
  check: HistoryCheck;
  /** From the kill until the replica reported itself master. */
  failoverMs: number;
  /** From the kill until the killed server was back, as an online replica of the new master. */
  resyncedMs: number;
  /** The longest time no message of the killed master's rooms reached a subscriber. */
  stallMs: number;
  /** The same for the other masters' rooms. */
  otherStallMs: number;
  /** The longest time no publish to the killed master's rooms was acknowledged (202). */
  ackStallMs: number;
  /**
   * Median time from acknowledgement to delivery in the killed master's slowest room, before
   * the kill and once its replica is back: the wake-ups (sharded pub/sub) moved to the new
   * master if it stays low (the consumers' safety net alone reads a partition once per
   * mesh.readBlockMs, 1 s, which would put it near 500 ms).
   */
  medianBeforeMs: number;
  medianAfterMs: number;
  /** Acknowledged publishes to the killed master's rooms after the failover. */
  ackedAfter: number;
  mesh: TestMesh;
}

async function info(url: string, section: string): Promise<string> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.info(section);
  } catch {
    return '';
  } finally {
    client.disconnect();
  }
}

/** The master that holds `key`, and the rooms whose partition it holds too. */
async function masterOf(cluster: TestRedisCluster, key: string, rooms: string[]) {
  const client = new Cluster([{ host: '127.0.0.1', port: Number(new URL(cluster.urls[0]!).port) }]);
  try {
    await client.ping();
    const server = serverOf(client, key);
    const master = cluster.masters.find((m) => new URL(m.url).host === server);
    if (!master) throw new Error(`no master holds ${key}`);
    const keys = new Keys('thr:', 64);
    const on = rooms.filter((r) => serverOf(client, keys.funnel(keys.partitionOf(r))) === server);
    return { master, rooms: on };
  } finally {
    client.disconnect();
  }
}

/**
 * `behindMs`: the replica falls that far behind before the kill (frozen, its link dropped),
 * as a replica across a slow or broken link does; 0: a healthy replica, a few microseconds
 * behind on one machine.
 */
async function failoverUnderLoad(replicaWait: 0 | 1, behindMs = 0): Promise<Run> {
  const cluster = await startRedisCluster(3, 1);
  const mesh = new TestMesh(cluster.masters[0]!);
  onTestFailed(() => {
    for (const node of mesh.started) {
      const tail = node.process.output().trimEnd().split('\n').slice(-25).join('\n');
      console.log(`--- ${node.id}, last log lines:\n${tail}`);
    }
  });
  const rooms = Array.from({ length: ROOMS }, (_, i) => `r${i}`);
  // The worst master to lose: the one with the mesh's membership (`thr:nodes`), which every
  // node's heartbeat writes. Each node is given one master as its seed, as in
  // test/cluster/redis-cluster.test.ts; node-1's is the one killed, so it must find the
  // others from what it learned.
  const killed = await masterOf(cluster, new Keys('thr:', 64).nodes, rooms);
  const victim = killed.master;
  const victimRooms = killed.rooms;
  const other = cluster.masters.find((m) => m !== victim)!;
  for (const seed of [victim, other])
    await mesh.add({
      THRESHOLD_REDIS_URL: seed.url,
      THRESHOLD_REDIS_REPLICA_WAIT: String(replicaWait),
    });
  await mesh.agreement(20_000);
  expect(await createRooms(mesh, ROOMS)).toEqual(rooms);
  expect(victimRooms.length).toBeGreaterThanOrEqual(3);

  let killedAt = 0;
  let failoverMs = 0;
  let promotedAt = 0;
  let resyncedMs = 0;
  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      if (behindMs > 0) {
        // Frozen first, so it neither reads what is in flight nor connects again; then its
        // link is cut: what the master takes from now on reaches no replica.
        const port = /^slave0:ip=[^,]*,port=(\d+)/m.exec(
          await info(victim.url, 'replication'),
        )?.[1];
        const replica = cluster.replicas.find((r) => String(r.port) === port);
        if (!replica?.pid) throw new Error(`no replica of ${victim.url} found`);
        process.kill(replica.pid, 'SIGSTOP');
        const resume = () => {
          try {
            process.kill(replica.pid as number, 'SIGCONT');
          } catch {
            // Gone already.
          }
        };
        onTestFinished(resume);
        const master = new Redis(victim.url);
        await master.call('CLIENT', 'KILL', 'TYPE', 'replica');
        master.disconnect();
        await sleep(behindMs);
        killedAt = Date.now();
        await victim.kill();
        resume();
      } else {
        killedAt = Date.now();
        await victim.kill();
      }
      // Its replica is promoted once the other masters agree it failed.
      let promoted: string | undefined;
      while (!promoted && Date.now() - killedAt < 30_000) {
        for (const r of cluster.replicas)
          if (/^role:master/m.test(await info(r.url, 'replication'))) promoted = r.url;
        if (!promoted) await sleep(50);
      }
      if (!promoted) throw new Error('no replica took over within 30 s');
      promotedAt = Date.now();
      failoverMs = promotedAt - killedAt;
      await sleep(ALONE_MS);
      await cluster.restart(victim);
      while (Date.now() - killedAt < 60_000) {
        if (/^slave0:.*state=online/m.test(await info(promoted, 'replication'))) break;
        await sleep(50);
      }
      resyncedMs = Date.now() - killedAt;
    },
    { beforeMs: BEFORE_MS, afterMs: AFTER_MS, historyTimeoutMs: 15_000 },
  );
  const check = checkHistory(result);

  const watcher = result.watchers[0]!;
  /** The longest time none of `rs` got a message at the first subscriber, from a second before the kill. */
  const stall = (rs: string[]) => {
    const arrivals = rs
      .flatMap((r) => watcher.received.get(r) ?? [])
      .map((m) => m.at)
      .filter((at) => at >= killedAt - 1_000)
      .sort((a, b) => a - b);
    let longest = 0;
    for (let i = 1; i < arrivals.length; i++)
      longest = Math.max(longest, (arrivals[i] ?? 0) - (arrivals[i - 1] ?? 0));
    return longest;
  };
  const stallMs = stall(victimRooms);
  const acks = victimRooms
    .flatMap((r) => result.load.accepted.get(r) ?? [])
    .map((id) => result.load.ackedAt.get(id) ?? 0)
    .filter((at) => at >= killedAt - 1_000)
    .sort((a, b) => a - b);
  let ackStallMs = 0;
  for (let i = 1; i < acks.length; i++)
    ackStallMs = Math.max(ackStallMs, (acks[i] ?? 0) - (acks[i - 1] ?? 0));
  const otherStallMs = stall(rooms.filter((r) => !victimRooms.includes(r)));
  /** The highest, over the killed master's rooms, median acknowledgement-to-delivery time of messages acked in [from, to). */
  const median = (from: number, to: number) => {
    let worst = -1;
    for (const room of victimRooms) {
      const arrived = new Map((watcher.received.get(room) ?? []).map((m) => [m.id, m.at]));
      const ms: number[] = [];
      for (const id of result.load.accepted.get(room) ?? []) {
        const acked = result.load.ackedAt.get(id) ?? 0;
        const at = arrived.get(id);
        if (acked >= from && acked < to && at !== undefined) ms.push(at - acked);
      }
      ms.sort((a, b) => a - b);
      worst = Math.max(worst, ms[Math.floor(ms.length / 2)] ?? -1);
    }
    return worst;
  };
  const medianBeforeMs = median(0, killedAt);
  const medianAfterMs = median(killedAt + resyncedMs + 1_000, Infinity);
  let ackedAfter = 0;
  for (const room of victimRooms)
    for (const id of result.load.accepted.get(room) ?? [])
      if ((result.load.ackedAt.get(id) ?? 0) > promotedAt) ackedAfter++;

  const fault = behindMs > 0 ? ` (replica ${behindMs}ms behind)` : '';
  figures(`redis-cluster-failover${fault} redisReplicaWait=${replicaWait}`, {
    ...historyFigures(check),
    'rooms-on-killed-master': victimRooms.length,
    'lost-acked-before-kill': check.lostAckedAt.map((t) => `${killedAt - t}ms`).join(',') || 'none',
    failover: `${failoverMs}ms`,
    'ack-stall': `${ackStallMs}ms`,
    'commit-stall': `${stallMs}ms`,
    'other-masters-stall': `${otherStallMs}ms`,
    'median-delivery-before/after': `${medianBeforeMs}ms/${medianAfterMs}ms`,
    'replica-back': `${resyncedMs}ms`,
    'acked-after-failover': ackedAfter,
    retried: result.load.retries,
    'subscriber-errors':
      result.watchers
        .flatMap((w) => w.errors as { code: string; room?: string }[])
        .map((e) => `${e.code}:${e.room}`)
        .join(',') || 'none',
  });
  // prettier-ignore
  return { check, failoverMs, resyncedMs, stallMs, otherStallMs, ackStallMs, medianBeforeMs, medianAfterMs, ackedAfter, mesh };
}

/** Both relay nodes lived through it and are ready; the killed master's rooms commit again. */
async function expectRecovered(run: Run): Promise<void> {
  for (const n of run.mesh.nodes) {
    expect(n.process.child.exitCode).toBeNull();
    await waitReady(n, 5_000);
  }
  expect(run.mesh.started).toHaveLength(2);
  expect(run.ackedAfter).toBeGreaterThan(20);
  expect(run.check).toMatchObject({ duplicated: 0, reordered: 0, gaps: 0, unhealedGaps: 0 });
  // The wake-ups followed the new master, every one of them.
  expect(run.medianAfterMs).toBeGreaterThanOrEqual(0);
  expect(run.medianAfterMs).toBeLessThan(250);
}

describe('Redis Cluster master killed under load (3 masters, 1 replica each)', () => {
  it('redisReplicaWait 1: the replica takes over, the nodes follow it, nothing acknowledged is lost', async () => {
    const run = await failoverUnderLoad(1);
    await expectRecovered(run);
    expectNoAnomalies(run.check);
  }, 180_000);

  it('redisReplicaWait 0: the replica takes over, the nodes follow it; what was lost is measured', async () => {
    const run = await failoverUnderLoad(0);
    await expectRecovered(run);
  }, 180_000);

  it(`its replica ${BEHIND_MS} ms behind, redisReplicaWait 1: nothing acknowledged is lost`, async () => {
    const run = await failoverUnderLoad(1, BEHIND_MS);
    await expectRecovered(run);
    expectNoAnomalies(run.check);
  }, 180_000);

  it(`its replica ${BEHIND_MS} ms behind, redisReplicaWait 0: what was acknowledged meanwhile is lost, measured`, async () => {
    const run = await failoverUnderLoad(0, BEHIND_MS);
    await expectRecovered(run);
  }, 180_000);
});
