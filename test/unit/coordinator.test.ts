import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { Coordinator } from '../../src/mesh/coordinator.ts';
import type { Leases } from '../../src/mesh/leases.ts';
import type { Membership } from '../../src/mesh/membership.ts';
import type { PartitionConsumer } from '../../src/mesh/partition-consumer.ts';
import { Ring } from '../../src/mesh/ring.ts';

const P = 16;

/** A shared lease table and live set standing in for Redis, so rounds can be driven by hand. */
class World {
  live = new Set<string>();
  leases = new Map<number, string>();
  token = 0;
  redisDown = false;

  membership(node: string): Membership {
    return {
      heartbeat: async () => {
        if (this.redisDown) throw new Error('connect ECONNREFUSED');
        this.live.add(node);
        return [...this.live].sort();
      },
      announce: async () => {},
      leave: async () => {
        this.live.delete(node);
      },
    } as unknown as Membership;
  }

  leaseTable(node: string): Leases {
    return {
      acquire: async (partitions: number[]) => {
        const got = new Map<number, string>();
        for (const p of partitions) {
          // Like acquire-lease-2.lua: a lease left by this same node id is taken over.
          if (this.leases.has(p) && !this.leases.get(p)?.startsWith(`${node}:`)) continue;
          const value = `${node}:${++this.token}`;
          this.leases.set(p, value);
          got.set(p, value);
        }
        return got;
      },
      renew: async (held: ReadonlyMap<number, string>) => {
        if (this.redisDown) throw new Error('connect ECONNREFUSED');
        return [...held].filter(([p, v]) => this.leases.get(p) !== v).map(([p]) => p);
      },
      release: async (p: number, value: string) => {
        if (this.leases.get(p) === value) this.leases.delete(p);
      },
    } as unknown as Leases;
  }
}

function fakeConsumer() {
  const reading = new Set<number>();
  const consumer = {
    onFenced: (_p: number) => {},
    add: async (p: number) => {
      reading.add(p);
    },
    remove: async (p: number) => {
      reading.delete(p);
    },
    get partitions() {
      return [...reading];
    },
    reclaimIdle: async () => {},
  };
  return { reading, consumer: consumer as unknown as PartitionConsumer & typeof consumer };
}

function coordinator(world: World, node: string, leaseTtlMs = 3000) {
  const { reading, consumer } = fakeConsumer();
  const c = new Coordinator(
    world.membership(node),
    world.leaseTable(node),
    consumer,
    { nodeId: node, partitions: P, heartbeatMs: 60_000, leaseTtlMs },
    { connections: () => 0 },
    createLogger('silent'),
  );
  return { c, reading, consumer };
}

describe('Coordinator', () => {
  it('a membership message before start() runs no round: no heartbeat, no lease (a twin check is still running)', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    a.c.poke();
    await new Promise((r) => setTimeout(r, 20));
    expect(world.live.size).toBe(0);
    expect(world.leases.size).toBe(0);
    await a.c.start();
    expect(world.live.has('a')).toBe(true);
    a.c.poke();
    await a.c.stop();
  });

  it('a single node takes every partition and reads them all, then is ready', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    expect(a.c.ready).toBe(false);
    await a.c.tick();
    expect(a.c.ownedPartitions).toHaveLength(P);
    expect([...a.reading].sort((x, y) => x - y)).toEqual(a.c.ownedPartitions);
    expect(a.c.ready).toBe(true);
  });

  it('hands partitions over when a second node joins: released by one, acquired by the other', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    const b = coordinator(world, 'b');
    await a.c.tick();
    await b.c.tick(); // b joins, but a still holds every lease
    expect(b.c.ready).toBe(false);
    await a.c.tick(); // a sees b and releases what the ring gives b
    await b.c.tick(); // b acquires them
    const expected = new Ring(['a', 'b']).partitionsOf('b', P);
    expect(expected.length).toBeGreaterThan(0);
    expect(b.c.ownedPartitions).toEqual(expected);
    expect(a.c.ownedPartitions).toEqual(new Ring(['a', 'b']).partitionsOf('a', P));
    expect([...a.reading].some((p) => b.reading.has(p))).toBe(false);
    expect(a.c.ready && b.c.ready).toBe(true);
  });

  it('stops reading a partition at once when its lease was taken over', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    await a.c.tick();
    world.leases.set(3, 'intruder:99');
    await a.c.tick();
    expect(a.reading.has(3)).toBe(false);
    expect(a.c.ownedPartitions).not.toContain(3);
    expect(a.c.ready).toBe(false);
  });

  it('forgets a partition the commit script fenced, and takes it back once the lease is free', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    await a.c.tick();
    world.leases.delete(5);
    a.consumer.onFenced(5);
    expect(a.c.ownedPartitions).not.toContain(5);
    await a.c.tick();
    expect(a.c.ownedPartitions).toContain(5);
  });

  it('gives every partition up when Redis has been unreachable for longer than the lease ttl', async () => {
    const world = new World();
    const a = coordinator(world, 'a', 1);
    await a.c.tick();
    world.redisDown = true;
    await new Promise((r) => setTimeout(r, 5));
    await a.c.tick();
    expect(a.reading.size).toBe(0);
    expect(a.c.ownedPartitions).toEqual([]);
    world.redisDown = false;
    world.leases.clear();
    await a.c.tick();
    expect(a.c.ownedPartitions).toHaveLength(P);
  });

  it('a failed release never leaves a partition held but unread when the ring gives it back', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    await a.c.tick();
    const b = coordinator(world, 'b');
    await b.c.tick();
    const lease = a.c as unknown as { leases: Leases };
    const release = lease.leases.release;
    lease.leases.release = async () => {
      throw new Error('connection lost');
    };
    await a.c.tick(); // gives b's partitions away; the first release throws
    lease.leases.release = release;
    world.live.delete('b'); // b vanishes: the ring gives everything back to a
    await a.c.tick();
    await a.c.tick();
    expect(a.c.ownedPartitions).toHaveLength(P);
    expect([...a.reading].sort((x, y) => x - y)).toEqual(a.c.ownedPartitions);
  });

  it('on stop finishes reading, releases every lease and leaves the live set', async () => {
    const world = new World();
    const a = coordinator(world, 'a');
    await a.c.tick();
    await a.c.stop();
    expect(a.reading.size).toBe(0);
    expect(world.leases.size).toBe(0);
    expect(world.live.has('a')).toBe(false);
  });
});
