/**
 * Tag expansion (Threshold only; the baseline is the naive way, run side by side): one node,
 * a tag `all` of `members` ids and `muted` of every tenth, uploaded over the API in delta
 * uploads of 10,000. Then `all - muted` is expanded in a fresh process per run, alternately
 * with the streaming merge (src/notify/tag-expansion.ts: paged ZRANGE … BYLEX, `pageSize` a
 * read) and the naive way (every member of both tags read at once, then a Set difference):
 * recipients/s and the process's peak RSS over what it held before, with their ratios. Last,
 * the node's own view: `POST /v1/tags/expand` (which streams the whole expansion to count it)
 * timed, with the node's RSS sampled meanwhile.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExpandParams, ExpandResult } from '../clients/expander.ts';
import { median } from '../lib/report.ts';
import { forkBench } from '../lib/processes.ts';
import { round, sample } from '../lib/proc-stats.ts';
import type { RedisMode } from '../systems/redis.ts';
import { ThresholdCluster } from '../systems/threshold.ts';

export interface ExpansionWorkload {
  members: number;
  /** Every `mutedEvery`-th member is also in `muted`. */
  mutedEvery: number;
  pageSize: number;
  runs: number;
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
}

const id = (i: number) => `user:m${String(i).padStart(7, '0')}`;

export async function runExpansion(
  w: ExpansionWorkload,
  log: (line: string) => void,
  mode: RedisMode = 'standalone',
): Promise<ExpansionRun> {
  const mesh = await ThresholdCluster.start(1, {}, mode);
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
    const mib = (b: number) => round(b / 1048576, 1);
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
    };
  } finally {
    await mesh.stop();
  }
}
