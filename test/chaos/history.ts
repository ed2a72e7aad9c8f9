/**
 * The history checker: what clients were told (every acknowledged publish, with when it was
 * acknowledged) against what the system did (each room's committed history, read back over
 * HTTP, and every delivery each WebSocket subscriber saw), counted as the anomalies a user
 * would notice. The recording is done by RoomLoad (acknowledged publishes) and Watcher
 * (deliveries, healed with `since` on reconnect); underLoad() reads the histories back.
 */
import { expect } from 'vitest';
import type { ScenarioResult } from '../helpers/room-load.ts';

export interface HistoryCheck {
  /** Publishes the client was told were accepted (202). */
  acknowledged: number;
  /** Messages in the rooms' histories. */
  committed: number;
  /** Acknowledged, never committed. */
  lost: number;
  /** Envelope ids committed more than once. */
  duplicated: number;
  /** Acknowledged messages of a room committed in another order than they were acknowledged. */
  reordered: number;
  /** Holes in a room's seq run (1, 2, 3…) as committed. */
  gaps: number;
  /** Seqs a subscriber never received, even after reconnecting with `since`. */
  unhealedGaps: number;
  /** Seqs a subscriber received twice, or after a later one. */
  deliveredTwice: number;
  deliveredOutOfOrder: number;
  /** Deliveries whose message the room's history holds at another seq, or not at all. */
  misdelivered: number;
  /** Worst time from a publish's acknowledgement to its delivery at a subscriber. */
  maxStalenessMs: number;
  /** When each lost message was acknowledged (ms since epoch), oldest first. */
  lostAckedAt: number[];
}

export function checkHistory(result: ScenarioResult): HistoryCheck {
  const { load, report, watchers } = result;
  const lostAckedAt: number[] = [];
  for (const ids of load.accepted.values())
    for (const id of ids) if (!report.seqOf.has(id)) lostAckedAt.push(load.ackedAt.get(id) ?? 0);
  lostAckedAt.sort((a, b) => a - b);

  let unhealedGaps = 0;
  let deliveredTwice = 0;
  let deliveredOutOfOrder = 0;
  let misdelivered = 0;
  for (const w of watchers) {
    for (const [room, last] of report.last) {
      const d = w.defects(room, last);
      unhealedGaps += d.missing;
      deliveredTwice += d.repeated;
      deliveredOutOfOrder += d.outOfOrder;
      for (const r of w.received.get(room) ?? [])
        if (report.seqOf.get(r.id) !== r.seq) misdelivered++;
    }
  }

  let maxStalenessMs = 0;
  for (const w of watchers) {
    for (const [room, ids] of load.accepted) {
      const arrived = new Map<number, number>();
      for (const r of w.received.get(room) ?? []) if (!arrived.has(r.seq)) arrived.set(r.seq, r.at);
      for (const id of ids) {
        const seq = report.seqOf.get(id);
        const at = seq === undefined ? undefined : arrived.get(seq);
        const acked = load.ackedAt.get(id);
        if (at !== undefined && acked !== undefined)
          maxStalenessMs = Math.max(maxStalenessMs, at - acked);
      }
    }
  }

  return {
    acknowledged: load.total,
    committed: report.committed,
    lost: report.lost,
    duplicated: report.duplicated,
    reordered: report.reordered,
    gaps: report.gaps,
    unhealedGaps,
    deliveredTwice,
    deliveredOutOfOrder,
    misdelivered,
    maxStalenessMs,
    lostAckedAt,
  };
}

/** The check's figures for {@link figures}, in the order the README's table gives them. */
export function historyFigures(check: HistoryCheck): Record<string, number | string> {
  return {
    acked: check.acknowledged,
    committed: check.committed,
    lost: check.lost,
    duplicated: check.duplicated,
    reordered: check.reordered,
    gaps: check.gaps,
    'unhealed-gaps': check.unhealedGaps,
    'delivered-twice': check.deliveredTwice,
    misdelivered: check.misdelivered,
    'max-staleness': `${check.maxStalenessMs}ms`,
  };
}

/**
 * The guarantees every fault scenario asserts: each acknowledged message committed once, in
 * its room's order, with no seq gap; and each subscriber got every seq once, in order, under
 * its own message (after healing with `since`).
 */
export function expectNoAnomalies(check: HistoryCheck): void {
  expect(check).toMatchObject({ lost: 0, duplicated: 0, reordered: 0, gaps: 0 });
  expect(check).toMatchObject({
    unhealedGaps: 0,
    deliveredTwice: 0,
    deliveredOutOfOrder: 0,
    misdelivered: 0,
  });
}
