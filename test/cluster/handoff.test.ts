/**
 * Planned changes to a three-node mesh (P = 64) under a steady publish load: a fourth node
 * joins, a node leaves with SIGTERM. Partitions move cleanly, and nothing is lost or doubled.
 */
import { describe, expect, it } from 'vitest';
import { PARTITIONS, startMesh } from '../helpers/mesh.ts';
import { createRooms, underLoad, watcherDefects } from '../helpers/room-load.ts';

/** The `ms` of each "handoff complete" log line a node printed after `offset`. */
function handoffs(output: string, offset = 0): number[] {
  return [...output.slice(offset).matchAll(/[^\n]*"msg":"handoff complete"[^\n]*/g)].map((m) =>
    Number(/"ms":(\d+)/.exec(m[0])?.[1]),
  );
}

describe('scaling out from three nodes to four', () => {
  it('moves only partitions that go to the new node, about a quarter, losing nothing', async () => {
    const mesh = await startMesh(3);
    const rooms = await createRooms(mesh, 24);
    const before = (await mesh.agreement()).owners;
    const offsets = mesh.nodes.map((n) => n.process.output().length);
    let after: string[] = [];
    let joined = '';
    let agreedMs = 0;

    const result = await underLoad(mesh, rooms, async () => {
      const started = Date.now();
      const fourth = await mesh.add();
      joined = fourth.id;
      after = (await mesh.agreement(15_000)).owners;
      agreedMs = Date.now() - started;
    });

    const moved = before.flatMap((owner, n) => (after[n] !== owner ? [n] : []));
    const fraction = moved.length / PARTITIONS;
    const handoffMs = Math.max(
      ...mesh.nodes.slice(0, 3).flatMap((n, i) => handoffs(n.process.output(), offsets[i])),
      ...handoffs(mesh.nodes[3]?.process.output() ?? ''),
    );
    const { report } = result;
    console.log(
      `${joined} joined: ${moved.length} of ${PARTITIONS} partitions moved (${(fraction * 100).toFixed(1)}%), ` +
        `all to ${joined}; slowest handoff ${handoffMs} ms; all four agreed ${agreedMs} ms after the ` +
        `start; ${report.committed} committed, lost ${report.lost}, duplicated ${report.duplicated}, ` +
        `reordered ${report.reordered}`,
    );

    expect(moved.every((n) => after[n] === joined)).toBe(true);
    expect(fraction).toBeGreaterThan(0.15);
    expect(fraction).toBeLessThan(0.35);
    expect(report).toMatchObject({ lost: 0, duplicated: 0, reordered: 0, gaps: 0 });
    expect(watcherDefects(result)).toEqual({ missing: 0, repeated: 0, outOfOrder: 0 });
  }, 60_000);
});

describe('a node stopped with SIGTERM', () => {
  it('exits 0, its partitions are owned elsewhere within 5 s, and nothing is duplicated', async () => {
    const mesh = await startMesh(3);
    const rooms = await createRooms(mesh, 24);
    const leaving = mesh.nodes[1];
    if (!leaving) throw new Error('no second node');
    let exitCode: number | null = null;
    let takenOverMs = 0;

    const result = await underLoad(mesh, rooms, async () => {
      const stoppedAt = Date.now();
      mesh.signal(leaving, 'SIGTERM');
      const [exit] = await Promise.all([leaving.process.exited, mesh.agreement(10_000)]);
      exitCode = exit.code;
      takenOverMs = Date.now() - stoppedAt;
    });

    const { report } = result;
    console.log(
      `SIGTERM ${leaving.id}: exit code ${exitCode}; its partitions owned by the other two ` +
        `${takenOverMs} ms after the signal; ${report.committed} committed, lost ${report.lost}, ` +
        `duplicated ${report.duplicated}, reordered ${report.reordered}`,
    );
    expect(exitCode).toBe(0);
    expect(takenOverMs).toBeLessThan(5_000);
    expect(leaving.process.output()).toMatch(/"msg":"stopped"/);
    expect(report).toMatchObject({ lost: 0, duplicated: 0, reordered: 0, gaps: 0 });
    expect(watcherDefects(result)).toEqual({ missing: 0, repeated: 0, outOfOrder: 0 });
  }, 60_000);
});
