/**
 * The room workloads (fan-out, many rooms): subscribers in rooms, a publisher sending
 * open-loop at fixed rates stepped up until the system stops keeping up.
 */
import type { RunParams, RunResult } from '../clients/publisher.ts';
import { merge, type Percentiles, percentilesWithMissing } from '../lib/histogram.ts';
import { machineLoad } from '../lib/machine.ts';
import { type BenchChild, coreCount, forkBench, pin, unpin } from '../lib/processes.ts';
import { measure, type ProcUsage, round, sample } from '../lib/proc-stats.ts';
import { now } from '../lib/stamp.ts';
import { startTarget, type SystemName, type Target } from '../systems/targets.ts';

export interface RoomsWorkload {
  name: string;
  /** Room ids are `<prefix>-<n>`: each workload has rooms of its own on a shared system. */
  prefix: string;
  rooms: number;
  perRoom: number;
  /** Offered rates (messages/s) in increasing order; stepping stops at the first not sustained. */
  rates: number[];
  warmupMs: number;
  measureMs: number;
  /** Wait after the last send for messages still on their way. */
  drainMs: number;
  /** Measure any failed rate a second time before giving up (a neighbour's burst can fail it). */
  retry: boolean;
}

/** Sustained: at least this share of the expected receipts within the drain time... */
export const SUSTAINED_SHARE = 0.95;
/** ...and a p99 below this (ms): beyond it, messages are queueing. */
export const SUSTAINED_P99_MS = 500;
/**
 * A step whose load generators (publisher, subscribers) used at least this share of their
 * cores measured the harness as much as the system: its failure is not the server's.
 */
export const LOAD_GENERATOR_BOUND_SHARE = 0.9;

/** Whether the load generators' CPU (cores) reached {@link LOAD_GENERATOR_BOUND_SHARE} of theirs. */
export const loadGeneratorBound = (clientCpu: number, clientCores: number) =>
  clientCpu >= LOAD_GENERATOR_BOUND_SHARE * clientCores;

export interface Step {
  rate: number;
  sustained: boolean;
  /** Receipts per second of messages published in the measured window. */
  delivered: number;
  /** Share of the expected receipts (rate × subscribers per room) that arrived. */
  share: number;
  /** Commits per second during the measured window (systems that commit). */
  committed: number | undefined;
  latency: Percentiles;
  publisherLagMs: number;
  processes: ProcUsage[];
  /** The publisher and subscribers' processes were near their cores' capacity (see README). */
  loadGeneratorBound: boolean;
  /** Cores busy machine-wide during the window, ours and anyone else's (noise check). */
  machineBusyCores: number;
}

export interface RoomsRun {
  steps: Step[];
  /** Delivered/s at the highest sustained rate (0 if none was). */
  saturation: number;
  saturationRate: number;
  /** Highest commits/s seen over the steps: the commit capacity once a step overloads it. */
  maxCommitted: number | undefined;
  peakRssMiB: Record<string, number>;
}

export const roomIds = (n: number, prefix = 'room') =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

const sleepUntil = (t: number) => new Promise((r) => setTimeout(r, Math.max(0, t - now())));

/**
 * Waits (at most `maxMs`) until receipts stop arriving: an overloaded step leaves queues that
 * would otherwise spill into the next measurement, even the next workload's on the same system.
 */
async function quiet(target: Target, maxMs = 5000): Promise<void> {
  const deadline = now() + maxMs;
  let last = -1;
  for (;;) {
    const total = (await target.report()).reduce((a, r) => a + r.total, 0);
    if (total === last || now() > deadline) return;
    last = total;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Runs the room workloads `ws` one after the other against one start of `system` (its
 * processes, Redis, publisher and subscribers' process are started once: each workload has
 * rooms of its own, and the earlier workload's subscribers stay connected, idle).
 */
export async function runRooms(
  system: SystemName,
  ws: RoomsWorkload[],
  log: (line: string) => void,
): Promise<RoomsRun[]> {
  // The publisher starts (tsx, a second or so) while the system does.
  const publisher = forkBench(`${system} publisher`, 'clients/publisher.ts', 'client');
  const target = await startTarget(system);
  try {
    await publisher.call('connect', target.publisher);
    const runs: RoomsRun[] = [];
    for (const w of ws) {
      log(`  ${w.name}`);
      runs.push(await runWorkload(target, publisher, w, log));
    }
    return runs;
  } finally {
    await Promise.all([publisher.stop(), target.stop()]);
  }
}

async function runWorkload(
  target: Target,
  publisher: BenchChild,
  w: RoomsWorkload,
  log: (line: string) => void,
): Promise<RoomsRun> {
  const rooms = roomIds(w.rooms, w.prefix);
  const subscribeStart = now();
  // Setting up is not measured: servers and subscribers may use every core meanwhile.
  for (const p of [...target.processes, ...target.clients]) unpin(p.pid);
  await target.subscribe(rooms, w.perRoom);
  for (const p of target.processes) pin(p.pid, 'server');
  for (const p of target.clients) pin(p.pid, 'client');
  log(`  ${w.rooms * w.perRoom} subscribers in ${round((now() - subscribeStart) / 1000, 1)} s`);
  await quiet(target);
  const measureStep = async (rate: number): Promise<Step> => {
    const start = now() + 200;
    const from = start + w.warmupMs;
    const to = from + w.measureMs;
    await target.window({ from, to });
    const running = publisher.call<RunResult>('run', {
      rooms,
      rate,
      start,
      durationMs: w.warmupMs + w.measureMs,
    } satisfies RunParams);
    await sleepUntil(from);
    const committedFrom = await target.committed?.(publisher);
    const usage = measure([
      ...target.processes,
      ...target.clients,
      { name: publisher.name, pid: publisher.pid },
    ]);
    const load = machineLoad();
    await sleepUntil(to);
    const processes = usage.finish();
    const machineBusyCores = load();
    const committedTo = await target.committed?.(publisher);
    const sent = await running;
    // Drain: until every expected receipt is in, or drainMs after the window.
    const expected = (rate * w.measureMs * w.perRoom) / 1000;
    let receipts = await target.report();
    let count = receipts.reduce((a, r) => a + r.count, 0);
    while (count < expected && now() < to + w.drainMs) {
      await new Promise((r) => setTimeout(r, 25));
      receipts = await target.report();
      count = receipts.reduce((a, r) => a + r.count, 0);
    }
    // Receipts still missing count at the drain time, a latency they certainly exceed.
    const latency = percentilesWithMissing(
      merge(receipts.map((r) => r.histogram)),
      expected - count,
      w.drainMs,
    );
    const share = count / expected;
    const clients = new Set([...target.clients.map((c) => c.pid), publisher.pid]);
    const clientCpu = processes.filter((p) => clients.has(p.pid)).reduce((a, p) => a + p.cpu, 0);
    const step: Step = {
      rate,
      sustained: share >= SUSTAINED_SHARE && latency.p99 < SUSTAINED_P99_MS,
      delivered: round(count / (w.measureMs / 1000)),
      share: round(share, 3),
      committed:
        committedFrom === undefined || committedTo === undefined
          ? undefined
          : round((committedTo - committedFrom) / (w.measureMs / 1000)),
      latency,
      publisherLagMs: sent.maxLagMs,
      processes,
      loadGeneratorBound: loadGeneratorBound(clientCpu, coreCount('client')),
      machineBusyCores,
    };
    log(
      `  ${rate} msg/s: delivered ${step.delivered}/s (${round(share * 100, 1)}%` +
        (latency.missing ? `, ${latency.missing} missing counted at ${w.drainMs} ms), ` : '), ') +
        `p50 ${latency.p50} p99 ${latency.p99} p99.9 ${latency.p999} ms` +
        (step.committed === undefined ? '' : `, committed ${step.committed}/s`) +
        `, publisher lag ${sent.maxLagMs} ms, machine busy ${machineBusyCores} cores, cpu ${processes.map((p) => `${p.name} ${p.cpu}`).join(', ')}` +
        (step.sustained ? '' : '  (not sustained)') +
        (step.loadGeneratorBound ? '  (load-generator bound)' : ''),
    );
    return step;
  };
  const steps: Step[] = [];
  for (const rate of w.rates) {
    let step = await measureStep(rate);
    // On a shared machine one neighbour's burst can fail a step: with `retry`, a rate is
    // given up only when it fails twice in a row. The first rate always gets its second
    // try: failing it leaves no figure at all (and no overload step to show capacity).
    if (!step.sustained && (w.retry || steps.length === 0)) {
      await quiet(target);
      step = await measureStep(rate);
    }
    steps.push(step);
    if (!step.sustained) break;
  }
  const best = steps.filter((s) => s.sustained).at(-1);
  const committed = steps.flatMap((s) => (s.committed === undefined ? [] : [s.committed]));
  return {
    steps,
    saturation: best?.delivered ?? 0,
    saturationRate: best?.rate ?? 0,
    maxCommitted: committed.length > 0 ? Math.max(...committed) : undefined,
    peakRssMiB: Object.fromEntries(
      target.processes.map((p) => [p.name, round((sample(p.pid)?.peakRssBytes ?? 0) / 2 ** 20, 1)]),
    ),
  };
}
