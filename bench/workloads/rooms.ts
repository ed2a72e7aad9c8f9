/**
 * The room workloads (fan-out, many rooms): subscribers in rooms, a publisher sending
 * open-loop at fixed rates stepped up until the system stops keeping up, then probes between
 * the last rate sustained and the first not (bisection).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { RunParams, RunResult } from '../clients/publisher.ts';
import { merge, type Percentiles, percentiles, percentilesWithMissing } from '../lib/histogram.ts';
import { machineLoad } from '../lib/machine.ts';
import { type BenchChild, coreCount, forkBench, pin, unpin } from '../lib/processes.ts';
import { measure, type ProcUsage, round } from '../lib/proc-stats.ts';
import type { Receipts } from '../lib/receiver.ts';
import { now } from '../lib/stamp.ts';
import {
  bisect,
  disturbed,
  loadGeneratorBound,
  SUSTAINED_P99_MS,
  SUSTAINED_SHARE,
  trendingUp,
} from '../lib/verdict.ts';
import type { RedisMode } from '../systems/redis.ts';
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
  /** Probes between the last rate sustained and the first not (bisection). */
  probes: number;
  /** Times a disturbed step (outside load, publisher lag) is measured again. */
  disturbedRetries: number;
}

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
  /** machineBusyCores minus our processes' CPU: a neighbour's load (noise within ±0.05). */
  outsideCores: number;
  /** Outside load or publisher lag beyond their bounds even after the retries (see verdict.ts). */
  disturbed: boolean;
  /** p50 (ms) of the first and last slice of the window (trend rule). */
  trendP50: [number, number];
  /** Receipts that arrived before their stamp (clock disagreement): counted as 0 ms. */
  negative: number;
}

export interface RoomsRun {
  steps: Step[];
  /** Delivered/s at the highest sustained rate (0 if none was). */
  saturation: number;
  saturationRate: number;
  /** Every rate measured was sustained: the saturation is at least this, not this. */
  lowerBound: boolean;
  /** Highest commits/s seen over the steps: the commit capacity once a step overloads it. */
  maxCommitted: number | undefined;
  /** Highest RSS sampled during the saturation step, per server process. */
  peakRssMiB: Record<string, number>;
}

export const roomIds = (n: number, prefix = 'room') =>
  Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

const sleepUntil = (t: number) => sleep(Math.max(0, t - now()));

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
    await sleep(200);
  }
}

/**
 * Runs the room workloads `ws` one after the other against one start of `system` (its
 * processes, Redis, publisher and subscribers' process are started once: each workload has
 * rooms of its own, and the earlier workload's subscribers stay connected, idle). `redis`:
 * what Threshold runs on.
 */
export async function runRooms(
  system: SystemName,
  ws: RoomsWorkload[],
  log: (line: string) => void,
  redis: RedisMode = 'standalone',
): Promise<RoomsRun[]> {
  // The publisher starts (tsx, a second or so) while the system does.
  const publisher = forkBench(`${system} publisher`, 'clients/publisher.ts', 'client');
  const target = await startTarget(system, redis);
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
  const clientCores = coreCount('client');
  const clientPids = new Set([...target.clients.map((c) => c.pid), publisher.pid]);
  const measureStep = async (rate: number): Promise<Step> => {
    // A whole millisecond: stamps travel rounded to the microsecond, so a fractional start
    // would round the window's first stamp to just before `from` and lose it from the count.
    const start = Math.ceil(now()) + 200;
    const from = start + w.warmupMs;
    const to = from + w.measureMs;
    // Slices for the trend rule: seconds, or halves of a shorter window.
    const sliceMs = Math.min(1000, w.measureMs / 2);
    await target.window({ from, to, sliceMs });
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
    const benchCpu = process.cpuUsage();
    // RSS sampled through the window: its peak under this load, not the process's lifetime.
    while (now() < to - 100) {
      await sleep(100);
      usage.sample();
    }
    await sleepUntil(to);
    const processes = usage.finish();
    const machineBusyCores = load();
    const { user, system } = process.cpuUsage(benchCpu);
    const committedTo = await target.committed?.(publisher);
    const sent = await running;
    // Drain: until every expected receipt is in, or drainMs after the window.
    const expected = (rate * w.measureMs * w.perRoom) / 1000;
    const counted = (rs: Receipts[]) => rs.reduce((a, r) => a + r.count, 0);
    let receipts = await target.report();
    while (counted(receipts) < expected && now() < to + w.drainMs) {
      await sleep(25);
      receipts = await target.report();
    }
    const count = counted(receipts);
    // Receipts still missing count at the drain time, a latency they certainly exceed.
    const latency = percentilesWithMissing(
      merge(receipts.map((r) => r.histogram)),
      expected - count,
      w.drainMs,
    );
    const slice = (i: number) =>
      percentiles(merge(receipts.flatMap((r) => r.slices.at(i) ?? []))).p50;
    const trendP50: [number, number] = [slice(0), slice(-1)];
    const share = count / expected;
    const ours = processes.reduce((a, p) => a + p.cpu, 0);
    const clientCpu = processes.filter((p) => clientPids.has(p.pid)).reduce((a, p) => a + p.cpu, 0);
    // This process (polling, IPC) is ours too, though no figure of the table.
    const mine = (user + system) / 1000 / w.measureMs;
    const outsideCores = round(machineBusyCores - ours - mine, 2);
    const step: Step = {
      rate,
      sustained:
        share >= SUSTAINED_SHARE &&
        latency.p99 < SUSTAINED_P99_MS &&
        !trendingUp(trendP50[0], trendP50[1]),
      delivered: round(count / (w.measureMs / 1000)),
      share: round(share, 3),
      committed:
        committedFrom === undefined || committedTo === undefined
          ? undefined
          : round((committedTo - committedFrom) / (w.measureMs / 1000)),
      latency,
      publisherLagMs: sent.maxLagMs,
      processes,
      loadGeneratorBound: loadGeneratorBound(clientCpu, clientCores),
      machineBusyCores,
      outsideCores,
      disturbed: disturbed(outsideCores, sent.maxLagMs),
      trendP50,
      negative: receipts.reduce((a, r) => a + r.negative, 0),
    };
    log(
      `  ${rate} msg/s: delivered ${step.delivered}/s (${round(share * 100, 1)}%` +
        (latency.missing ? `, ${latency.missing} missing counted at ${w.drainMs} ms), ` : '), ') +
        `p50 ${latency.p50} p99 ${latency.p99} p99.9 ${latency.p999} ms` +
        ` (p50 first/last slice ${trendP50[0]}/${trendP50[1]})` +
        (step.committed === undefined ? '' : `, committed ${step.committed}/s`) +
        `, publisher lag ${sent.maxLagMs} ms, machine busy ${machineBusyCores} cores (outside ${outsideCores})` +
        `, cpu ${processes.map((p) => `${p.name} ${p.cpu}`).join(', ')}` +
        (step.negative ? `, ${step.negative} negative latencies` : '') +
        (step.sustained ? '' : '  (not sustained)') +
        (step.loadGeneratorBound ? '  (load-generator bound)' : '') +
        (step.disturbed ? '  (disturbed)' : ''),
    );
    return step;
  };
  /** A step not disturbed by outside load or publisher lag, within the retries allowed. */
  const measureUndisturbed = async (rate: number): Promise<Step> => {
    let step = await measureStep(rate);
    for (let i = 0; step.disturbed && i < w.disturbedRetries; i++) {
      log('  (disturbed: measured again)');
      await quiet(target);
      step = await measureStep(rate);
    }
    return step;
  };
  const steps: Step[] = [];
  // On a shared machine one neighbour's burst can fail a step: with `retry`, a rate is
  // given up only when it fails twice in a row. The first rate always gets its second
  // try: failing it leaves no figure at all (and no overload step to show capacity).
  const measureRate = async (rate: number): Promise<Step> => {
    let step = await measureUndisturbed(rate);
    if (!step.sustained && (w.retry || steps.length === 0)) {
      await quiet(target);
      step = await measureUndisturbed(rate);
    }
    steps.push(step);
    return step;
  };
  let passed: number | undefined;
  let failed: number | undefined;
  for (const rate of w.rates) {
    if ((await measureRate(rate)).sustained) passed = rate;
    else {
      failed = rate;
      break;
    }
  }
  // Bisection: the doubling steps are coarse, the capacity lies between these two rates.
  for (let i = 0; i < w.probes && passed !== undefined && failed !== undefined; i++) {
    const probe = bisect(passed, failed);
    if (probe === undefined) break;
    await quiet(target);
    log(`  probe between ${passed} and ${failed} msg/s`);
    if ((await measureRate(probe)).sustained) passed = probe;
    else failed = probe;
  }
  const best = steps.find((s) => s.sustained && s.rate === passed);
  const committed = steps.flatMap((s) => (s.committed === undefined ? [] : [s.committed]));
  const servers = new Set(target.processes.map((p) => p.pid));
  return {
    steps,
    saturation: best?.delivered ?? 0,
    saturationRate: best?.rate ?? 0,
    lowerBound: failed === undefined,
    maxCommitted: committed.length > 0 ? Math.max(...committed) : undefined,
    peakRssMiB: Object.fromEntries(
      (best?.processes ?? []).filter((p) => servers.has(p.pid)).map((p) => [p.name, p.rssMiB]),
    ),
  };
}
