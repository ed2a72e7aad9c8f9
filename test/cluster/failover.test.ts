/**
 * Three relay node processes on one Redis (P = 64): a node dies (SIGKILL) or freezes
 * (SIGSTOP past its lease) under a steady publish load, and nothing a client was told
 * is accepted goes missing, twice, or out of order.
 */
import { describe, expect, it } from 'vitest';
import { Keys } from '../../src/redis/keys.ts';
import { PARTITIONS, startMesh, type TestMesh } from '../helpers/mesh.ts';
import { createRooms, underLoad, watcherDefects } from '../helpers/room-load.ts';

const keys = new Keys('thr:', PARTITIONS);
const LEASE_TTL_MS = 3_000; // config/default.json mesh.leaseTtlMs, used by the nodes

/** The node that owns the room's partition. */
async function ownerOf(mesh: TestMesh, room: string) {
  const { owners } = await mesh.agreement();
  const owner = mesh.nodes.find((n) => n.id === owners[keys.partitionOf(room)]);
  if (!owner) throw new Error(`no running node owns ${room}`);
  return owner;
}

describe('a node killed under load (SIGKILL)', () => {
  it('loses nothing: every accepted message committed once, in order, seen by every subscriber; every room commits again within 6 s', async () => {
    const mesh = await startMesh(3);
    const rooms = await createRooms(mesh, 24);
    const victim = await ownerOf(mesh, rooms[0] as string);
    let killedAt = 0;
    let agreedAfterMs = 0;

    const result = await underLoad(
      mesh,
      rooms,
      async () => {
        killedAt = Date.now();
        mesh.signal(victim, 'SIGKILL');
        agreedAfterMs = (await mesh.agreement(15_000)).ms;
      },
      { beforeMs: 3_000, afterMs: 4_000 },
    );

    // When each room first delivered a message after the kill, to subscribers on survivors.
    const survivors = result.watchers.filter((w) => w.node !== victim && w.reconnects === 0);
    const resumedMs = rooms.map((room) => {
      const firsts = survivors.map(
        (w) => w.received.get(room)?.find((r) => r.at > killedAt)?.at ?? Infinity,
      );
      return Math.min(...firsts) - killedAt;
    });
    const worst = Math.max(...resumedMs);
    const { report } = result;
    console.log(
      `SIGKILL ${victim.id}: ${report.committed} messages committed (${result.load.total} accepted, ` +
        `${result.load.retries} requests retried elsewhere); lost ${report.lost}, duplicated ` +
        `${report.duplicated}, reordered ${report.reordered}, gaps ${report.gaps}; survivors agreed ` +
        `${agreedAfterMs} ms after the kill; every room committed again within ${worst} ms`,
    );

    expect(result.load.total).toBeGreaterThan(500);
    expect(report).toMatchObject({ lost: 0, duplicated: 0, reordered: 0, gaps: 0 });
    expect(watcherDefects(result)).toEqual({ missing: 0, repeated: 0, outOfOrder: 0 });
    // The dead node's subscriber moved to a survivor and caught up with `since`.
    const orphan = result.watchers.find((w) => w.node === victim || w.reconnects > 0);
    expect(orphan?.reconnects).toBeGreaterThan(0);
    expect(worst).toBeLessThan(6_000);
  }, 60_000);
});

describe('a node paused past its lease (SIGSTOP, then SIGCONT)', () => {
  it('commits nothing stale: no duplicate, missing or out-of-order seq, and it rejoins', async () => {
    const mesh = await startMesh(3);
    const rooms = await createRooms(mesh, 24);
    const victim = await ownerOf(mesh, rooms[0] as string);

    const result = await underLoad(
      mesh,
      rooms,
      async () => {
        await mesh.pause(victim, 2 * LEASE_TTL_MS);
        // It heartbeats again, so the ring gives it its partitions back.
        await mesh.agreement(15_000);
      },
      { beforeMs: 2_000, afterMs: 3_000 },
    );

    const { report } = result;
    console.log(
      `SIGSTOP ${victim.id} for ${2 * LEASE_TTL_MS} ms: ${report.committed} committed; lost ` +
        `${report.lost}, duplicated ${report.duplicated}, reordered ${report.reordered}, gaps ${report.gaps}`,
    );
    expect(report).toMatchObject({ lost: 0, duplicated: 0, reordered: 0, gaps: 0 });
    expect(watcherDefects(result)).toEqual({ missing: 0, repeated: 0, outOfOrder: 0 });
    // It found out on waking that its leases were gone, and took back only fresh ones.
    expect(victim.process.output()).toMatch(/lease (expired or taken over|lost)/);
    expect(victim.process.output()).toMatch(/"msg":"handoff complete"/);
  }, 60_000);
});
