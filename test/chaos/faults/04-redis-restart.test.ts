/**
 * Scenario 4: Redis restarts under load, on the same port and data directory. Nodes
 * reconnect by themselves and keep committing. What an acknowledged publish may lose
 * depends on the append-only file's fsync policy: with `everysec` at most the last second
 * or so before a crash; with `always`, and across a graceful restart (SHUTDOWN flushes),
 * nothing. These runs are the README's durability table.
 */
import { describe, expect, it } from 'vitest';
import { sleep, startMesh, type TestMesh, waitReady } from '../../helpers/mesh.ts';
import { startPrivateRedis } from '../../helpers/redis.ts';
import { createRooms, type ScenarioResult, underLoad } from '../../helpers/room-load.ts';
import { figures, length } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures, type HistoryCheck } from '../history.ts';

const AFTER_MS = length(8_000, 4_000);
/** everysec fsyncs once a second; a write can wait up to ~2 s behind a slow fsync. */
const EVERYSEC_WINDOW_MS = 2_000;

interface Run {
  check: HistoryCheck;
  result: ScenarioResult;
  crashAt: number;
  /** From the crash until every node answered /readyz 200 again. */
  recoveredMs: number;
  /** Acknowledged after the restart (all must commit). */
  ackedAfter: number;
  mesh: TestMesh;
}

async function restartUnderLoad(
  appendFsync: 'everysec' | 'always',
  how: 'SIGKILL' | 'SHUTDOWN',
): Promise<Run> {
  const mesh = await startMesh(3, {}, { appendOnly: true, appendFsync });
  const rooms = await createRooms(mesh, 16);
  let crashAt = 0;
  let restartedAt = 0;
  let recoveredMs = 0;
  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      crashAt = Date.now();
      if (how === 'SIGKILL') await mesh.redis.kill();
      else await mesh.redis.stop();
      await sleep(1_000);
      const { dir, port } = mesh.redis;
      await startPrivateRedis({ dir, port, appendOnly: true, appendFsync });
      restartedAt = Date.now();
      await Promise.all(mesh.nodes.map((n) => waitReady(n, 30_000)));
      recoveredMs = Date.now() - crashAt;
    },
    { beforeMs: 3_000, afterMs: AFTER_MS, historyTimeoutMs: 8_000 },
  );
  const check = checkHistory(result);
  let ackedAfter = 0;
  for (const at of result.load.ackedAt.values()) if (at > restartedAt) ackedAfter++;
  figures(`redis-restart ${appendFsync} ${how}`, {
    ...historyFigures(check),
    // How long before the crash each lost message was acknowledged.
    'lost-acked-before-crash': check.lostAckedAt.map((t) => `${crashAt - t}ms`).join(',') || 'none',
    'acked-after-restart': ackedAfter,
    'nodes-ready-after': `${recoveredMs}ms`,
  });
  return { check, result, crashAt, recoveredMs, ackedAfter, mesh };
}

/** The nodes were never restarted and committed what came after. */
function expectRecovered(run: Run): void {
  for (const n of run.mesh.nodes) expect(n.process.child.exitCode).toBeNull();
  expect(run.mesh.started).toHaveLength(3);
  expect(run.ackedAfter).toBeGreaterThan(50);
  expect(run.recoveredMs).toBeLessThan(30_000);
}

describe('Redis restarted under load', () => {
  it('appendfsync everysec, SIGKILL: loses at most what was acknowledged in the last ~2 s', async () => {
    const run = await restartUnderLoad('everysec', 'SIGKILL');
    expectRecovered(run);
    // Everything acknowledged before the last fsync survived.
    for (const at of run.check.lostAckedAt)
      expect(at).toBeGreaterThan(run.crashAt - EVERYSEC_WINDOW_MS);
    expect(run.check).toMatchObject({ duplicated: 0, reordered: 0 });
  }, 120_000);

  it('appendfsync always, SIGKILL: loses nothing acknowledged', async () => {
    const run = await restartUnderLoad('always', 'SIGKILL');
    expectRecovered(run);
    expectNoAnomalies(run.check);
  }, 120_000);

  it('appendfsync everysec, graceful restart (SIGTERM: Redis flushes): loses nothing acknowledged', async () => {
    const run = await restartUnderLoad('everysec', 'SHUTDOWN');
    expectRecovered(run);
    expectNoAnomalies(run.check);
  }, 120_000);
});
