/**
 * What a partition consumer (mesh/partition-consumer.ts) hands the processor it feeds, the
 * commit path or the outbox runner, and what it takes back: the seam between reading a
 * partition's stream and doing something with its entries.
 */

/**
 * One entry read by the owner of its partition (a funnel entry, an outbox job). `fields` is
 * null if it was trimmed or deleted while pending; `data` is its `e` field (an envelope).
 */
export interface FunnelEntry {
  partition: number;
  lease: string;
  id: string;
  data: string | null;
  fields: string[] | null;
}

export interface BatchOutcome {
  /** Partitions with entries that must be tried again before anything newer (order). */
  retry: ReadonlySet<number>;
  /** Partitions whose lease turned out not to be ours: stop reading them now. */
  fenced: ReadonlySet<number>;
}

/** What the consumer hands its entries to: the commit path, the outbox runner. */
export interface BatchProcessor {
  process(entries: FunnelEntry[]): Promise<BatchOutcome>;
  /** Entries it can take now (unbounded when absent); at 0 the consumer waits. */
  capacity?(): number;
}
