/**
 * Scenario 1: a node is SIGKILLed every ~10 s for a minute (short: 3 kills, 8 s apart) while
 * publishers write to many rooms, and a replacement starts after each kill. Nothing
 * acknowledged is lost, committed twice or out of order, and every subscriber heals.
 */
import { expect, it } from 'vitest';
import { sleep, startMesh } from '../../helpers/mesh.ts';
import { createRooms, underLoad } from '../../helpers/room-load.ts';
import { figures, length } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures } from '../history.ts';

const KILLS = length(6, 3);
const EVERY_MS = length(10_000, 8_000);

it(`SIGKILL a node every ${EVERY_MS / 1000} s (${KILLS} times) under load: lost 0, duplicated 0, reordered 0`, async () => {
  const mesh = await startMesh(3);
  const rooms = await createRooms(mesh, 32);
  const agreedMs: number[] = [];

  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      for (let k = 0; k < KILLS; k++) {
        const started = Date.now();
        // The oldest running node: over the run every original node dies.
        mesh.signal(mesh.nodes[0]!, 'SIGKILL');
        await mesh.add();
        agreedMs.push((await mesh.agreement(20_000)).ms + Date.now() - started);
        await sleep(Math.max(0, EVERY_MS - (Date.now() - started)));
      }
    },
    { beforeMs: 2_000, afterMs: 3_000 },
  );

  const check = checkHistory(result);
  figures('sigkill', {
    kills: KILLS,
    ...historyFigures(check),
    retried: result.load.retries,
    'worst-recovery': `${Math.max(...agreedMs)}ms`,
  });
  expect(check.acknowledged).toBeGreaterThan(500);
  expectNoAnomalies(check);
  // Every original node died, so every subscriber reconnected elsewhere at least once.
  expect(result.watchers.every((w) => w.reconnects > 0)).toBe(true);
}, 240_000);
