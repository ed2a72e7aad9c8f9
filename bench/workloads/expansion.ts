/**
 * Tag expansion (Threshold only; the baseline is the naive way, run side by side): one node,
 * a tag `all` of `members` ids and `muted` of every tenth, uploaded over the API in delta
 * uploads of 10,000. Then `all - muted` is expanded in a fresh process per run, alternately
 * with the streaming merge (src/notify/tag-expansion.ts: paged ZRANGE … BYLEX, `pageSize` a
 * read) and the naive way (every member of both tags read at once, then a Set difference):
 * recipients/s and the process's peak RSS over what it held before, with their ratios. Last,
 * the node's own view: `POST /v1/tags/expand` (which streams the whole expansion to count it)
 * timed, with the node's RSS sampled meanwhile. Then the whole path: `dispatches` notifications
 * to `all - muted` with no fallback channels, one after another, each polled until `done`:
 * the node's recipients/s and its peak RSS above its idle RSS (VmRSS sampled every 50 ms,
 * and VmHWM, reset just before), set against the expansion alone (speed) and the naive
 * way's growth (memory). Every recipient is an offline `user:` with no push and no links, so
 * each one costs what the dispatcher always does (presence, links, one record) and ends
 * `failed` at once, with no outbox job.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExpandParams, ExpandResult } from '../clients/expander.ts';
import { median } from '../lib/report.ts';
import { forkBench } from '../lib/processes.ts';
import { peakRssBytes, resetPeakRss, round, sample } from '../lib/proc-stats.ts';
import type { RedisMode } from '../systems/redis.ts';
import { ThresholdCluster, type ThresholdNode } from '../systems/threshold.ts';

export interface ExpansionWorkload {
  members: number;
  /** Every `mutedEvery`-th member is also in `muted`. */
  mutedEvery: number;
  pageSize: number;
  runs: number;
  /** Notifications dispatched to `all - muted`, one after another (median by recipients/s). */
  dispatches: number;
  /** The node's `notifications.pageSize` (set, so the table can say it; 500 by default). */
  dispatchPageSize: number;
}

export interface WayFigures {
  recipients: number;
  perSecond: number;
  /** The expanding process's peak RSS above its RSS before expanding, MiB (median of runs). */
  peakGrowthMiB: number;
  peakRssMiB: number;
  runs: ExpandResult[];
}

export interface ExpansionRun {
  members: number;
  muted: number;
  pageSize: number;
  streaming: WayFigures;
  naive: WayFigures;
  /** streaming ÷ naive */
  speedRatio: number;
  memoryRatio: number;
  /** POST /v1/tags/expand on the node: seconds, and its RSS before and at most during, MiB. */
  node: {
    count: number;
    seconds: number;
    perSecond: number;
    rssBeforeMiB: number;
    peakRssMiB: number;
  };
  /** The whole path: notifications to `all - muted` dispatched by the node until `done`. */
  dispatch: DispatchFigures;
}

/** One notification to `all - muted`, from POST to the first poll that reads `done`. */
export interface DispatchRun {
  expansion: number;
  failed: number;
  /** 202 → the node's `dispatchedAt`, ms: the wait for the dispatcher's next tick. */
  claimMs: number;
  /** 202 → the first poll that read `done`, s. */
  seconds: number;
  perSecond: number;
  /** The node's RSS just before the POST, and its peak until `done` (VmHWM, or sampled), MiB. */
  rssIdleMiB: number;
  peakRssMiB: number;
  growthMiB: number;
  /**
   * The peak so far when a quarter, half, three quarters and all of the audience was
   * recorded, MiB: flat after the first quarter is memory that does not grow with recipients.
   */
  peakByQuarterMiB: number[];
  /** False where the kernel refused the VmHWM reset: the peak is the 50 ms samples'. */
  hwm: boolean;
}

export interface DispatchFigures {
  pageSize: number;
  pollMs: number;
  sampleMs: number;
  /** Medians over the runs. */
  perSecond: number;
  claimMs: number;
  growthMiB: number;
  /** dispatch recipients/s ÷ the streaming expansion's: what the per-recipient work costs. */
  speedRatio: number;
  /** The node's growth ÷ the naive expanding process's growth. */
  memoryRatio: number;
  runs: DispatchRun[];
}

const POLL_MS = 25;
const SAMPLE_MS = 50;
const DISPATCH_TIMEOUT_MS = 300_000;
const mib = (b: number) => round(b / 1048576, 1);

const id = (i: number) => `user:m${String(i).padStart(7, '0')}`;

export async function runExpansion(
  w: ExpansionWorkload,
  log: (line: string) => void,
  mode: RedisMode = 'standalone',
): Promise<ExpansionRun> {
  const mesh = await ThresholdCluster.start(
    1,
    { THRESHOLD_NOTIFICATIONS_PAGE_SIZE: String(w.dispatchPageSize) },
    mode,
  );
  const node = mesh.nodes[0]!;
  try {
    const all = Array.from({ length: w.members }, (_, i) => id(i));
    const muted = all.filter((_, i) => i % w.mutedEvery === 0);
    const started = performance.now();
    for (const [tag, members] of [
      ['all', all],
      ['muted', muted],
    ] as const)
      for (let i = 0; i < members.length; i += 10_000) {
        const res = await mesh.admin(node, 'POST', `/v1/tags/${tag}/members`, {
          add: members.slice(i, i + 10_000),
        });
        if (!res.ok) throw new Error(`upload ${tag}: ${res.status} ${await res.text()}`);
      }
    log(
      `  uploaded ${w.members.toLocaleString('en-US')} + ${muted.length.toLocaleString('en-US')} ids in ${round((performance.now() - started) / 1000, 1)} s`,
    );

    const results: Record<'streaming' | 'naive', ExpandResult[]> = { streaming: [], naive: [] };
    for (let run = 0; run < w.runs; run++) {
      // Alternating, so both ways meet the same machine.
      for (const way of run % 2
        ? (['naive', 'streaming'] as const)
        : (['streaming', 'naive'] as const)) {
        const child = forkBench(`expander ${way}`, 'clients/expander.ts', 'client');
        try {
          const params: ExpandParams = {
            url: mesh.redis.url,
            cluster: mode === 'cluster',
            prefix: 'thr:',
            include: 'all',
            exclude: 'muted',
            pageSize: w.pageSize,
            way,
          };
          await child.call('connect', params);
          const r = await child.call<ExpandResult>('expand', params);
          if (r.recipients !== w.members - muted.length)
            throw new Error(
              `${way}: ${r.recipients} recipients, expected ${w.members - muted.length}`,
            );
          log(`  ${way}: ${JSON.stringify(r)}`);
          results[way].push(r);
        } finally {
          await child.stop();
        }
      }
    }
    const figures = (runs: ExpandResult[]): WayFigures => ({
      recipients: runs[0]?.recipients ?? 0,
      perSecond: Math.round(median(runs.map((r) => r.recipients / r.seconds))),
      peakGrowthMiB: round(median(runs.map((r) => r.peakRssMiB - r.rssBeforeMiB)), 1),
      peakRssMiB: round(median(runs.map((r) => r.peakRssMiB)), 1),
      runs,
    });
    const streaming = figures(results.streaming);
    const naive = figures(results.naive);

    const pid = node.process.pid;
    const before = sample(pid)?.rssBytes ?? 0;
    let peak = before;
    let done = false;
    const sampler = (async () => {
      while (!done) {
        peak = Math.max(peak, sample(pid)?.rssBytes ?? 0);
        await sleep(5);
      }
    })();
    const t0 = performance.now();
    const res = await mesh.admin(node, 'POST', '/v1/tags/expand', {
      tags: 'all - muted',
      limit: 1,
    });
    const seconds = (performance.now() - t0) / 1000;
    done = true;
    await sampler;
    const { count } = (await res.json()) as { count: number };

    const recipients = w.members - muted.length;
    const dispatches: DispatchRun[] = [];
    for (let run = 0; run < w.dispatches; run++) {
      const r = await dispatchOnce(mesh, node, recipients);
      log(`  dispatch: ${JSON.stringify(r)}`);
      dispatches.push(r);
    }
    const dispatchPerSecond = Math.round(median(dispatches.map((r) => r.perSecond)));
    const growthMiB = round(median(dispatches.map((r) => r.growthMiB)), 1);
    return {
      members: w.members,
      muted: muted.length,
      pageSize: w.pageSize,
      streaming,
      naive,
      speedRatio: round(streaming.perSecond / naive.perSecond, 2),
      memoryRatio: round(streaming.peakGrowthMiB / naive.peakGrowthMiB, 2),
      node: {
        count,
        seconds: round(seconds, 3),
        perSecond: Math.round(count / seconds),
        rssBeforeMiB: mib(before),
        peakRssMiB: mib(peak),
      },
      dispatch: {
        pageSize: w.dispatchPageSize,
        pollMs: POLL_MS,
        sampleMs: SAMPLE_MS,
        perSecond: dispatchPerSecond,
        claimMs: Math.round(median(dispatches.map((r) => r.claimMs))),
        growthMiB,
        speedRatio: round(dispatchPerSecond / streaming.perSecond, 3),
        memoryRatio: round(growthMiB / naive.peakGrowthMiB, 2),
        runs: dispatches,
      },
    };
  } finally {
    await mesh.stop();
  }
}

/**
 * Posts a notification to `all - muted` and polls it until `done`, sampling the node's RSS
 * meanwhile; throws unless every recipient was counted once and ended `failed`.
 */
async function dispatchOnce(
  mesh: ThresholdCluster,
  node: ThresholdNode,
  recipients: number,
): Promise<DispatchRun> {
  const pid = node.process.pid;
  await sleep(1000); // what the previous phase left to collect, collected
  const hwm = resetPeakRss(pid);
  const idle = sample(pid)?.rssBytes ?? 0;
  let peak = idle;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      peak = Math.max(peak, sample(pid)?.rssBytes ?? 0);
      await sleep(SAMPLE_MS);
    }
  })();
  try {
    const res = await mesh.admin(node, 'POST', '/v1/notifications', {
      to: { tags: 'all - muted' },
      body: 'bench: everyone but the muted',
      channels: [],
    });
    const accepted = performance.now();
    const acceptedAt = Date.now();
    if (res.status !== 202) throw new Error(`notify: ${res.status} ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    interface Status {
      status: string;
      expansion: number;
      counts: { failed: number };
      dispatchedAt: string | null;
    }
    let status: Status;
    const peakSoFar = () => Math.max(peak, (hwm && peakRssBytes(pid)) || 0);
    const quarters: number[] = [];
    for (;;) {
      const poll = await mesh.admin(node, 'GET', `/v1/notifications/${id}`);
      if (!poll.ok) throw new Error(`status ${id}: ${poll.status} ${await poll.text()}`);
      status = (await poll.json()) as Status;
      const reached = Math.min(4, Math.floor((status.expansion * 4) / recipients));
      while (quarters.length < reached) quarters.push(mib(peakSoFar()));
      if (status.status === 'done') break;
      if (status.status !== 'queued' && status.status !== 'dispatching')
        throw new Error(`notification ${id}: ${status.status}, expected done`);
      if (performance.now() - accepted > DISPATCH_TIMEOUT_MS)
        throw new Error(`notification ${id}: not done after ${DISPATCH_TIMEOUT_MS} ms`);
      await sleep(POLL_MS);
    }
    const seconds = (performance.now() - accepted) / 1000;
    done = true;
    await sampler;
    peak = peakSoFar();
    if (status.expansion !== recipients || status.counts.failed !== recipients)
      throw new Error(
        `notification ${id}: expansion ${status.expansion}, failed ${status.counts.failed}; expected ${recipients} each`,
      );
    const dispatchedAt = status.dispatchedAt ? Date.parse(status.dispatchedAt) : acceptedAt;
    return {
      expansion: status.expansion,
      failed: status.counts.failed,
      claimMs: dispatchedAt - acceptedAt,
      seconds: round(seconds, 3),
      perSecond: Math.round(status.expansion / seconds),
      rssIdleMiB: mib(idle),
      peakRssMiB: mib(peak),
      growthMiB: mib(peak - idle),
      peakByQuarterMiB: quarters,
      hwm,
    };
  } finally {
    done = true;
    await sampler;
  }
}
