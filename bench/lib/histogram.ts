/**
 * Latency histograms (HdrHistogram, microsecond resolution) that travel between processes
 * as compressed base64, so receivers in several processes add up to one distribution.
 */
import * as hdr from 'hdr-histogram-js';

/** Up to one minute, three significant digits: plenty for publish→receive latency. */
const HIGHEST_US = 60_000_000;

export type Histogram = hdr.Histogram;

export function newHistogram(): Histogram {
  return hdr.build({
    bitBucketSize: 32,
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_US,
    numberOfSignificantValueDigits: 3,
  });
}

/** Records a latency in milliseconds (fractional), clamped into the trackable range. */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.min(HIGHEST_US, Math.max(1, Math.round(ms * 1000))));
}

export const encode = (h: Histogram): string => hdr.encodeIntoCompressedBase64(h);

/** One histogram holding every encoded one. */
export function merge(encoded: string[]): Histogram {
  const total = newHistogram();
  for (const e of encoded) total.add(hdr.decodeFromCompressedBase64(e, 32, false));
  return total;
}

export interface Percentiles {
  /** Receipts that arrived. */
  count: number;
  /** Receipts expected but not in by the end of the drain (counted at `ceilingMs`). */
  missing?: number;
  /**
   * The latency every missing receipt certainly exceeds (the drain time: even a message
   * stamped at the window's end waited that long): a percentile at or above it reads
   * "> ceiling", not a measured latency.
   */
  ceilingMs?: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
}

/** Milliseconds, rounded to the microsecond. */
export function percentiles(h: Histogram): Percentiles {
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
  };
}

/**
 * Percentiles of `h` with `missing` receipts counted at `ceilingMs`, so a step that lost
 * messages cannot report the latency of only the ones that made it (`h` is changed).
 */
export function percentilesWithMissing(
  h: Histogram,
  missing: number,
  ceilingMs: number,
): Percentiles {
  const count = h.totalCount;
  const lost = Math.max(0, Math.ceil(missing));
  if (lost > 0) h.recordValueWithCount(Math.min(HIGHEST_US, Math.round(ceilingMs * 1000)), lost);
  return { ...percentiles(h), count, missing: lost, ceilingMs };
}
