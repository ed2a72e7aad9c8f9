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
