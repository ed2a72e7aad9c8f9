/**
 * Scenario 2: a rolling restart under load. Each node in turn gets SIGTERM, exits by itself,
 * and a new node takes its place before the next one stops. Nothing acknowledged is lost or
 * committed twice, and the clients of each stopped node reconnect to another one and heal
 * with `since`.
 */
import { expect, it } from 'vitest';
import { sleep, startMesh } from '../../helpers/mesh.ts';
import { createRooms, underLoad } from '../../helpers/room-load.ts';
import { figures, length } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures } from '../history.ts';

const PAUSE_MS = length(5_000, 2_000);

it('rolling restart (SIGTERM every node in turn) under load: lost 0, duplicated 0, subscribers heal elsewhere', async () => {
  const mesh = await startMesh(3);
  const rooms = await createRooms(mesh, 32);
  const original = [...mesh.nodes];
  const exits: (number | null)[] = [];
  const stopMs: number[] = [];

  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      for (const node of original) {
        const started = Date.now();
        mesh.signal(node, 'SIGTERM');
        exits.push((await node.process.exited).code);
        stopMs.push(Date.now() - started);
        await mesh.add();
        await mesh.agreement(20_000);
        await sleep(PAUSE_MS);
      }
    },
    { beforeMs: 2_000, afterMs: 2_000 },
  );

  const check = checkHistory(result);
  figures('rolling-restart', {
    restarts: original.length,
    ...historyFigures(check),
    retried: result.load.retries,
    reconnects: result.watchers.reduce((n, w) => n + w.reconnects, 0),
    'slowest-stop': `${Math.max(...stopMs)}ms`,
  });
  expect(exits).toEqual(original.map(() => 0));
  expect(check.acknowledged).toBeGreaterThan(300);
  expectNoAnomalies(check);
  // Each watcher started on an original node, which stopped: it reconnected elsewhere.
  expect(result.watchers.every((w) => w.reconnects > 0)).toBe(true);
}, 240_000);
