/**
 * Scenario 6: poison messages. One entry can never be parsed (written straight into the
 * funnel); others belong to a room whose seq counter was corrupted, so their commit fails
 * every time. Each lands in `thr:dead` (after mesh.maxAttempts attempts for the ones that
 * fail), the operator is told (log, threshold_dead_letters_total), and the rooms sharing
 * their partition keep committing meanwhile.
 */
import { expect, it, onTestFinished } from 'vitest';
import { Keys } from '../../../src/redis/keys.ts';
import { eventually } from '../../helpers/eventually.ts';
import { admin, PARTITIONS, startMesh } from '../../helpers/mesh.ts';
import { connect } from '../../helpers/redis.ts';
import { underLoad } from '../../helpers/room-load.ts';
import { figures, sumMetric } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures } from '../history.ts';

const keys = new Keys('thr:', PARTITIONS);
const MAX_ATTEMPTS = 5; // config/default.json mesh.maxAttempts
// Enough that, were the partition held while they drain, the rooms next to them would stall.
const POISONED = 10;

it('poison messages land in thr:dead after a bounded number of attempts and never block their partition', async () => {
  const mesh = await startMesh(3);
  const redis = connect(mesh.redis.url);
  onTestFinished(() => redis.quit().then(() => undefined));
  // Healthy rooms on the poisoned room's partition, and a few elsewhere.
  const partition = keys.partitionOf('poison');
  const rooms: string[] = [];
  for (let i = 0; rooms.length < 6; i++)
    if (keys.partitionOf(`h${i}`) === partition) rooms.push(`h${i}`);
  rooms.push('o1', 'o2', 'o3');
  for (const id of ['poison', ...rooms])
    expect((await admin(mesh.pick(0), 'POST', '/v1/rooms', { id })).status).toBe(201);
  // INCR in the commit script fails on this value, every time.
  await redis.set(keys.seq('poison'), 'not-a-number');

  let poisonedAt = 0;
  let deadAfterMs = 0;
  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      poisonedAt = Date.now();
      await redis.xadd(keys.funnel(partition), '*', 'e', '{"v":1,"this":"is not an envelope"}');
      for (let i = 0; i < POISONED; i++) {
        const res = await admin(mesh.pick(i), 'POST', '/v1/rooms/poison/messages', {
          body: `poison ${i}`,
        });
        expect(res.status).toBe(202);
      }
      await eventually(
        'every poison entry dead-lettered',
        () => redis.xlen(keys.dead),
        (n) => n >= POISONED + 1,
        30_000,
      );
      deadAfterMs = Date.now() - poisonedAt;
    },
    { beforeMs: 2_000, afterMs: 3_000 },
  );

  const check = checkHistory(result);
  const dead = (await redis.xrange(keys.dead, '-', '+')).map(([, f]) => fields(f));
  const pending = (await redis.xpending(keys.funnel(partition), 'relay')) as [number];
  const deadMetric = await sumMetric(
    mesh.nodes,
    'threshold_dead_letters_total{reason="commit_failed"}',
  );
  // The rooms sharing the poison's partition, while it was being retried (until the last of it
  // was dead-lettered): publishes acknowledged then, and delivered (so committed) then too.
  const poisonedUntil = poisonedAt + deadAfterMs;
  let neighboursMeanwhile = 0;
  for (const room of rooms.filter((r) => keys.partitionOf(r) === partition)) {
    for (const id of result.load.accepted.get(room) ?? []) {
      const acked = result.load.ackedAt.get(id) ?? 0;
      const seq = result.report.seqOf.get(id);
      const delivered = result.watchers
        .map((w) => w.received.get(room)?.find((r) => r.seq === seq)?.at)
        .filter((at) => at !== undefined);
      if (acked >= poisonedAt && Math.min(...delivered) <= poisonedUntil) neighboursMeanwhile++;
    }
  }
  const logged = mesh.nodes.some((n) =>
    n.process.output().includes('dead-lettered a funnel entry (see the thr:dead stream)'),
  );
  figures('poison', {
    poisoned: POISONED + 1,
    'dead-lettered': dead.length,
    'all-dead-after': `${deadAfterMs}ms`,
    'neighbours-committed-meanwhile': neighboursMeanwhile,
    'funnel-pending': pending[0],
    ...historyFigures(check),
  });

  expect(dead.filter((d) => d.reason === 'invalid_envelope')).toHaveLength(1);
  const failed = dead.filter((d) => d.reason === 'commit_failed');
  expect(failed).toHaveLength(POISONED);
  for (const d of failed) {
    expect(d.detail).toMatch(new RegExp(`^${MAX_ATTEMPTS} attempts: .*not an integer`));
    expect(d.partition).toBe(String(partition));
  }
  expect(deadMetric).toBe(POISONED);
  expect(logged).toBe(true);
  // Nothing left holding the partition, and the rooms next to the poison never stalled.
  expect(pending[0]).toBe(0);
  expectNoAnomalies(check);
  expect(neighboursMeanwhile).toBeGreaterThan(0);
  expect((await admin(mesh.pick(0), 'GET', '/v1/rooms/poison/messages')).status).toBe(200);
}, 120_000);

function fields(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}
