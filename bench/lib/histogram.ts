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
  count: number;
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
