/**
 * Scenario 3: the owner of busy SMS rooms freezes (SIGSTOP) for twice the lease ttl, then
 * wakes (SIGCONT). Meanwhile its partitions moved on; on waking it must commit nothing stale
 * (history checker: no duplicate, gap or reorder) and send no text its successor sends too:
 * every (message, member) is texted exactly once, bar ambiguous sends, which are counted.
 */
import { expect, it, onTestFinished } from 'vitest';
import { Keys } from '../../../src/redis/keys.ts';
import { admin, PARTITIONS, startMesh } from '../../helpers/mesh.ts';
import { underLoad } from '../../helpers/room-load.ts';
import { standinEnv } from '../../twilio/sms-node.ts';
import { startStandin } from '../../twilio/standin.ts';
import { figures, length, sumMetric } from '../chaos.ts';
import { checkHistory, expectNoAnomalies, historyFigures } from '../history.ts';

const keys = new Keys('thr:', PARTITIONS);
const LEASE_TTL_MS = 3_000; // config/default.json mesh.leaseTtlMs
const ROOMS = length(8, 6);
const MEMBERS = 2;

it('SIGSTOP the owner of busy SMS rooms for 2 × lease ttl: no stale commit, no text sent twice', async () => {
  const standin = await startStandin();
  onTestFinished(() => standin.close());
  const mesh = await startMesh(3, standinEnv(standin, 4));
  const { owners } = await mesh.agreement();
  const victim = mesh.nodes.find((n) => n.id === owners[keys.partitionOf('s0')])!;
  const rooms = Array.from({ length: ROOMS }, (_, i) => `s${i}`);
  const members = new Map<string, string[]>();
  for (const [i, id] of rooms.entries()) {
    const number = `+1555030${String(i).padStart(4, '0')}`;
    expect((await admin(mesh.pick(i), 'POST', '/v1/rooms', { id, numbers: [number] })).status).toBe(
      201,
    );
    const phones = Array.from(
      { length: MEMBERS },
      (_, m) => `+1555031${String(i * MEMBERS + m).padStart(4, '0')}`,
    );
    members.set(id, phones);
    for (const p of phones)
      expect((await admin(mesh.pick(i), 'PUT', `/v1/rooms/${id}/members/phone:${p}`)).status).toBe(
        201,
      );
  }

  const result = await underLoad(
    mesh,
    rooms,
    async () => {
      await mesh.pause(victim, 2 * LEASE_TTL_MS);
      await mesh.agreement(20_000);
    },
    { beforeMs: 2_000, afterMs: 3_000 },
  );
  const check = checkHistory(result);

  // Every committed message is texted to each member of its room.
  const expected = check.committed * MEMBERS;
  const unique = (texts: { to: string; body: string }[]) =>
    new Set(texts.map((t) => `${t.to}|${t.body}`)).size;
  const texts = await standin
    .waitFor('every text of every committed message', (t) => unique(t) >= expected, 60_000)
    .catch(() => standin.messages());
  const perText = new Map<string, number>();
  for (const t of texts)
    perText.set(`${t.to}|${t.body}`, (perText.get(`${t.to}|${t.body}`) ?? 0) + 1);
  const repeated = [...perText.values()].filter((n) => n > 1);
  const ambiguous = await sumMetric(mesh.nodes, 'threshold_outbox_ambiguous_total{channel="sms"}');
  figures('sigstop-sms', {
    paused: `${2 * LEASE_TTL_MS}ms`,
    ...historyFigures(check),
    'texts-expected': expected,
    'texts-delivered': unique(texts),
    'texts-repeated': repeated.length,
    ambiguous,
  });

  expectNoAnomalies(check);
  expect(unique(texts)).toBe(expected);
  // A repeat only where a send was ambiguous, and at most one extra each.
  expect(repeated.length).toBeLessThanOrEqual(ambiguous);
  expect(repeated.every((n) => n === 2)).toBe(true);
}, 180_000);
