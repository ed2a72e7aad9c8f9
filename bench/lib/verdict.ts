/**
 * Pure judgements of one measured step of a room workload: whether the system kept up,
 * whether the measurement itself can be trusted, and which rate to probe next.
 */

/** Sustained: at least this share of the expected receipts within the drain time... */
export const SUSTAINED_SHARE = 0.95;
/** ...and a p99 below this (ms): beyond it, messages are queueing... */
export const SUSTAINED_P99_MS = 500;
/**
 * ...and a latency not growing over the window: the p50 of its last slice at most this many
 * times that of its first (a queue that grows steadily can still end under the p99 bound)...
 */
export const TREND_FACTOR = 2;
/** ...by more than this (ms): sub-millisecond p50s doubling is jitter, not a queue. */
export const TREND_FLOOR_MS = 5;

/** Latency grew over the window: the last slice's p50 well above the first's. */
export const trendingUp = (firstP50: number, lastP50: number): boolean =>
  lastP50 > TREND_FACTOR * firstP50 && lastP50 - firstP50 > TREND_FLOOR_MS;

/**
 * A step whose load generators (publisher, subscribers) used at least this share of their
 * cores measured the harness as much as the system: its failure is not the server's.
 */
export const LOAD_GENERATOR_BOUND_SHARE = 0.9;

/** Whether the load generators' CPU (cores) reached {@link LOAD_GENERATOR_BOUND_SHARE} of theirs. */
export const loadGeneratorBound = (clientCpu: number, clientCores: number): boolean =>
  clientCpu >= LOAD_GENERATOR_BOUND_SHARE * clientCores;

/** Cores busy machine-wide but not by our processes above which a step is measured again. */
export const OUTSIDE_LOAD_MAX_CORES = 0.3;
/** The publisher falling this far behind its schedule (ms) makes a step measured again. */
export const PUBLISHER_LAG_MAX_MS = 50;

/**
 * A step disturbed by something other than the system under test: a neighbour's load on the
 * machine, or a publisher that could not keep its schedule (the offered rate was not offered).
 */
export const disturbed = (outsideCores: number, publisherLagMs: number): boolean =>
  outsideCores > OUTSIDE_LOAD_MAX_CORES || publisherLagMs > PUBLISHER_LAG_MAX_MS;

/**
 * The next rate to probe between the highest sustained rate `passed` and the lowest failed
 * one `failed` (their midpoint, rounded to a step of 50 msg/s), or undefined when they are
 * that close already.
 */
export function bisect(passed: number, failed: number): number | undefined {
  const mid = Math.round((passed + failed) / 2 / 50) * 50;
  return mid > passed && mid < failed ? mid : undefined;
}
