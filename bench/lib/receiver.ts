import { type Histogram, encode, newHistogram, recordMs } from './histogram.ts';
import { now } from './stamp.ts';

/** What a receiver saw of the messages stamped inside the measured window. */
export interface Receipts {
  /** Receipts of messages stamped inside the window. */
  count: number;
  /** Every receipt, warm-up included: {@link quiet} waits for it to stop growing. */
  total: number;
  histogram: string;
  /** The window's receipts by when they were stamped, one histogram per slice (trend rule). */
  slices: string[];
  /** Receipts that arrived before their stamp (clocks disagreeing): recorded as 0 ms. */
  negative: number;
}

export interface ReceiverWindow {
  from: number;
  to: number;
  /** Length of each slice of the window (ms). */
  sliceMs: number;
}

/**
 * Counts receipts and records their latency, only for messages stamped inside the measured
 * window (warm-up and drain excluded), in all and slice by slice.
 */
export class Receiver {
  private w: ReceiverWindow = { from: Infinity, to: -Infinity, sliceMs: 1000 };
  private count = 0;
  private total = 0;
  private negative = 0;
  private histogram: Histogram = newHistogram();
  private slices: Histogram[] = [];

  window(w: ReceiverWindow): void {
    this.w = w;
    this.count = 0;
    this.total = 0;
    this.negative = 0;
    this.histogram.reset();
    const n = Math.max(1, Math.ceil((w.to - w.from) / w.sliceMs));
    while (this.slices.length < n) this.slices.push(newHistogram());
    this.slices.length = n;
    for (const s of this.slices) s.reset();
  }

  receive(stamp: number): void {
    this.total++;
    if (!(stamp >= this.w.from && stamp < this.w.to)) return;
    this.count++;
    const ms = now() - stamp;
    if (ms < 0) this.negative++;
    recordMs(this.histogram, ms);
    const slice = this.slices[Math.floor((stamp - this.w.from) / this.w.sliceMs)];
    if (slice) recordMs(slice, ms);
  }

  report(): Receipts {
    return {
      count: this.count,
      total: this.total,
      histogram: encode(this.histogram),
      slices: this.slices.map(encode),
      negative: this.negative,
    };
  }
}
