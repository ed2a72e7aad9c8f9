import { setTimeout as sleep, setImmediate as yieldNow } from 'node:timers/promises';

/**
 * Message bodies carry the publisher's intended send time, so a receiver on the same machine
 * clock computes publish→receive latency. Intended, not actual: a publisher that falls
 * behind its schedule adds its own delay to the latency (no coordinated omission).
 */
/** Body length of every benchmark message, in characters (a short chat message). */
export const BODY_CHARS = 100;

/**
 * Milliseconds with sub-millisecond precision on the system-wide monotonic clock
 * (process.hrtime is CLOCK_MONOTONIC on Linux, one clock for every process), so stamps
 * compare across processes; timeOrigin + performance.now() is fixed per process at its
 * start and can disagree between processes by a fraction of a millisecond or more.
 */
export const now = (): number => Number(process.hrtime.bigint()) / 1e6;

const PAD = 'x'.repeat(BODY_CHARS);

export function body(stamp: number): string {
  const head = `${stamp.toFixed(3)}|`;
  return head + PAD.slice(head.length);
}

/** The stamp at `from` in `text` (the start of a body inside a frame), or NaN. */
export function stampAt(text: string, from = 0): number {
  const end = text.indexOf('|', from);
  return end < 0 ? Number.NaN : Number(text.slice(from, end));
}

const BODY_FIELD = '"body":"';

/** The stamp of a JSON frame holding the body as `"body":"…"` (Threshold's message frame). */
export function stampOfFrame(frame: string): number {
  const at = frame.indexOf(BODY_FIELD);
  return at < 0 ? Number.NaN : stampAt(frame, at + BODY_FIELD.length);
}

/**
 * An open-loop schedule: `total` sends at `rate` per second from `start` (a `now()` time),
 * each on its own time whether or not earlier ones were answered. `send` gets the intended
 * time (for {@link body}). Between sends it sleeps until the next is due (timers fire on whole
 * milliseconds: sends go out in per-millisecond batches) and only yields when behind, to let
 * sockets write and read. Resolves with what was sent and how far behind it fell at worst.
 */
export async function openLoop(
  start: number,
  rate: number,
  total: number,
  send: (at: number) => void,
): Promise<{ sent: number; maxLagMs: number }> {
  const interval = 1000 / rate;
  let sent = 0;
  let maxLagMs = 0;
  while (now() < start) await sleep(Math.min(5, start - now()));
  while (sent < total) {
    const t = now();
    const due = Math.min(total, Math.floor((t - start) / interval) + 1);
    if (due > sent) maxLagMs = Math.max(maxLagMs, t - (start + sent * interval));
    for (; sent < due; sent++) send(start + sent * interval);
    const ahead = start + sent * interval - now();
    if (ahead > 0) await sleep(ahead);
    else await yieldNow();
  }
  return { sent, maxLagMs: Math.round(maxLagMs) };
}

/** A room picked at random. */
export function anyOf(rooms: readonly string[]): string {
  return rooms[Math.floor(Math.random() * rooms.length)] as string;
}
