import { type Histogram, encode, newHistogram, recordMs } from './histogram.ts';
import { now } from './stamp.ts';

/** What a receiver saw of the messages stamped inside the measured window. */
export interface Receipts {
  /** Receipts of messages stamped inside the window. */
  count: number;
  /** Every receipt, warm-up included. */
  total: number;
  histogram: string;
}

/**
 * Counts receipts and records their latency, only for messages stamped inside the measured
 * window (warm-up and drain excluded).
 */
export class Receiver {
  private from = Number.POSITIVE_INFINITY;
  private to = Number.NEGATIVE_INFINITY;
  private count = 0;
  private total = 0;
  private histogram: Histogram = newHistogram();

  window({ from, to }: { from: number; to: number }): void {
    this.from = from;
    this.to = to;
    this.count = 0;
    this.total = 0;
    this.histogram.reset();
  }

  receive(stamp: number): void {
    this.total++;
    if (!(stamp >= this.from && stamp < this.to)) return;
    this.count++;
    recordMs(this.histogram, now() - stamp);
  }

  report(): Receipts {
    return { count: this.count, total: this.total, histogram: encode(this.histogram) };
  }
}
