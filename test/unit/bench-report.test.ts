import { describe, expect, it } from 'vitest';
import {
  type Baseline,
  BASELINES,
  goals,
  latencyFigure,
  median,
  renderCluster,
  renderConversations,
  renderExpansion,
  renderTable,
  type Results,
  summarise,
} from '../../bench/lib/report.ts';
import { Receiver } from '../../bench/lib/receiver.ts';
import {
  merge,
  newHistogram,
  percentiles,
  percentilesWithMissing,
  recordMs,
} from '../../bench/lib/histogram.ts';
import { body, now, stampOfFrame } from '../../bench/lib/stamp.ts';
import type { RoomsRun, Step } from '../../bench/workloads/rooms.ts';
import type { CommitCost, ConversationsRun } from '../../bench/workloads/conversations.ts';
import type { DispatchRun, ExpansionRun } from '../../bench/workloads/expansion.ts';
import type { IngressRun } from '../../bench/workloads/ingress.ts';
import { bisect, disturbed, loadGeneratorBound, trendingUp } from '../../bench/lib/verdict.ts';

const step = (rate: number, delivered: number, p99: number, sustained = true): Step => ({
  rate,
  sustained,
  delivered,
  share: 1,
  committed: undefined,
  latency: { count: 1, p50: p99 / 2, p99, p999: p99, max: p99 },
  publisherLagMs: 0,
  processes: [{ name: 'node-1', pid: 1, cpu: 0.5, rssMiB: 100 }],
  loadGeneratorBound: false,
  machineBusyCores: 1,
  outsideCores: 0,
  disturbed: false,
  trendP50: [p99 / 2, p99 / 2],
  negative: 0,
});

const run = (steps: Step[], committed?: number): RoomsRun => {
  const best = steps.filter((s) => s.sustained).at(-1);
  return {
    steps,
    saturation: best?.delivered ?? 0,
    saturationRate: best?.rate ?? 0,
    lowerBound: steps.every((s) => s.sustained),
    maxCommitted: committed,
    peakRssMiB: { 'node-1': 100 },
  };
};

describe('bench report', () => {
  it('counts missing receipts at the ceiling, so a lossy step cannot show only its fast ones', () => {
    const h = newHistogram();
    for (let i = 0; i < 970; i++) recordMs(h, 2);
    const p = percentilesWithMissing(h, 30, 1000);
    expect(p.count).toBe(970);
    expect(p.missing).toBe(30);
    expect(p.p50).toBeCloseTo(2, 1);
    expect(p.p99).toBeGreaterThanOrEqual(1000);
    expect(latencyFigure(p.p99, p.ceilingMs)).toBe('> 1,000');
    expect(latencyFigure(p.p50, p.ceilingMs)).toBe('2.0');
    // Nothing missing: the figures are the measured ones.
    const whole = newHistogram();
    for (let i = 0; i < 1000; i++) recordMs(whole, i < 995 ? 2 : 40);
    const q = percentilesWithMissing(whole, 0, 1000);
    expect(q.p99).toBeCloseTo(2, 1);
    expect(latencyFigure(q.p999, q.ceilingMs)).toBe('40.0');
  });

  it('takes the median of an odd and an even number of runs', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('summarises runs rate by rate: medians, and sustained only in a majority of runs', () => {
    const s = summarise([
      run([step(500, 25_000, 10), step(1000, 50_000, 20)]),
      run([step(500, 24_000, 30), step(1000, 40_000, 900, false)]),
      run([step(500, 25_000, 20), step(1000, 30_000, 800, false)]),
    ]);
    expect(s.byRate.map((r) => [r.rate, r.sustained, r.p99])).toEqual([
      [500, true, 20],
      [1000, false, 800],
    ]);
    expect(s.saturation).toBe(25_000);
  });

  it('judges the goals on the ratios of the same run', () => {
    const fanout = {
      threshold: summarise([run([step(500, 25_000, 10), step(1000, 50_000, 20)])]),
      'socketio-streams': summarise([run([step(500, 25_000, 40), step(1000, 20_000, 900, false)])]),
    };
    const manyRooms = {
      threshold: summarise([run([step(1000, 1000, 5)], 4000)]),
      raw: summarise([run([step(1000, 1000, 5)], 10_000)]),
    };
    const connections = {
      threshold: {
        connections: 10_000,
        connectPerSecond: 2000,
        rssBeforeMiB: 100,
        rssAfterMiB: 200,
        kibPerConnection: 10.2,
      },
    };
    const list = goals({ fanout, manyRooms, connections });
    expect(list.map((g) => g.met)).toEqual([true, true, false, true]);
    expect(list[0]?.detail).toContain('2.00×');
    expect(list[2]?.detail).toContain('40%');
    const table = renderTable({
      fanout,
      manyRooms,
      connections,
      ingress: undefined,
      sms: undefined,
    } as Results);
    expect(table).toContain(
      '| Room fan-out | deliveries/s at saturation (offered msg/s) | ≥ 50,000 (≥ 1,000) | – | 25,000 (500) | – |',
    );
  });

  it('says in the table which figures are bounds, missing receipts or disturbed', () => {
    const lost = {
      ...step(2000, 80_000, 1000, false),
      latency: { count: 9, p50: 300, p99: 1000, p999: 1000, max: 1000, ceilingMs: 1000 },
      loadGeneratorBound: true,
    };
    const noisy = { ...step(500, 25_000, 40), disturbed: true };
    const table = renderTable({
      fanout: {
        threshold: summarise([run([step(500, 25_000, 10), step(1000, 50_000, 20)])]),
        'socketio-streams': summarise([run([noisy, lost])]),
      },
      manyRooms: {},
      connections: {},
      ingress: undefined,
      sms: undefined,
    } as unknown as Results);
    expect(table).toContain('≥ 50,000 (≥ 1,000)');
    expect(table).toContain('25,000 (500) (load-generator bound)');
    expect(table).toContain('20.0 / 40.0 / 40.0 (disturbed)');
    // A rate no other system sustained only shows when it is the highest sustained one.
    expect(table).not.toContain('at 2,000 msg/s');
  });

  it('sets Threshold on a Redis Cluster beside standalone, as cluster / standalone ratios', () => {
    const idleRun = (redis: 'standalone' | 'cluster', cpu: number, commands: number) => ({
      redis,
      seconds: 30,
      nodeCpuPercent: cpu,
      redisCpuPercent: 1,
      commandsPerSecond: commands,
      commands: [],
      servers: [],
      outsideCores: 0,
    });
    const r = {
      fanout: {
        threshold: summarise([run([step(500, 25_000, 10), step(1000, 50_000, 20, false)])]),
      },
      manyRooms: { threshold: summarise([run([step(1000, 1000, 5)], 4000)]) },
      cluster: {
        masters: 3,
        fanout: summarise([run([step(500, 20_000, 15), step(1000, 40_000, 30, false)])]),
        manyRooms: summarise([run([step(1000, 1000, 5), step(2000, 1500, 900, false)], 3000)]),
      },
      idle: { standalone: idleRun('standalone', 2, 1000), cluster: idleRun('cluster', 3, 1200) },
      connections: {},
    } as unknown as Results;
    const table = renderCluster(r) ?? '';
    expect(table).toContain(
      '| Room fan-out | deliveries/s at saturation (offered msg/s) | 25,000 (500) | 20,000 (500) | 0.80× |',
    );
    expect(table).toContain('at 500 msg/s (highest rate both sustained) | 5.0 / 10.0 / 10.0 |');
    expect(table).toContain('| p99 1.50× |');
    // Standalone sustained its top rate (a lower bound): the ratio is an upper bound.
    expect(table).toContain('| 3,000 | ≤ 0.75× |');
    expect(table).toContain('| 2.0% | 3.0% | 1.50× |');
    expect(table).toContain('| 1,000.0 | 1,200.0 | 1.20× |');
    expect(goals(r).at(-1)?.met).toBe(true);
    expect(renderCluster({ ...r, cluster: undefined, idle: undefined })).toBeUndefined();
  });

  it('prints the conversations figures, runs side by side, and judges them against the issue', () => {
    const ms = (p50: number, p99: number, count = 20) => ({ count, p50, p99, p999: p99, max: p99 });
    const cost = (members: number, perSecond: number, nodeCpuUs: number): CommitCost => ({
      members,
      committed: 1000,
      failed: 0,
      seconds: 1000 / perSecond,
      perSecond,
      latency: ms(12, 40, 1000),
      nodeCpuUs,
      redisCpuUs: 100,
    });
    const conv = (listP99: number, big: number, small: number): ConversationsRun => ({
      rooms: 1000,
      otherRooms: 100,
      setup: { requests: 16_004, seconds: 10 },
      alone: { latency: ms(48, 60), nodeCpuMs: 49, redisCpuMs: 6 },
      flow: { rate: 250, sent: 2750, accepted: 2750, failed: 0, committed: 2750, maxLagMs: 3 },
      list: ms(50, listP99),
      listAfter: ms(52, 90),
      listOthers: ms(8, 20, 80),
      latest: ms(2, 9, 60),
      read: ms(1.5, 7, 60),
      heavyCycles: 20,
      errors: 0,
      processes: [],
      outsideCores: 0.1,
      commits: {
        big: cost(10_000, big, 400),
        small: cost(2, small, 400),
        ratio: Math.round((big / small) * 100) / 100,
      },
    });
    const r = (c: ConversationsRun) => ({ conversations: c }) as unknown as Results;
    const one = renderConversations(r(conv(80, 990, 1000))) ?? '';
    expect(one).toContain('| Workload | Figure | Threshold |');
    expect(one).toContain(
      '| Conversations | GET /v1/me/rooms?limit=20, member of 1,000 rooms, messages flowing: p50 / p99 / max ms | 50.0 / 80.0 / 80.0 (n = 20) |',
    );
    expect(one).toContain('| 990 vs 1,000: 0.99× |');
    expect(one).toContain('| 400 + 100 vs 400 + 100: 1.00× |');
    // No cell breaks the table: every row has as many cells as the head.
    for (const line of one.split('\n')) expect(line.split(' | ')).toHaveLength(3);
    const two = renderConversations([r(conv(80, 990, 1000)), r(conv(150, 700, 1000))]) ?? '';
    expect(two).toContain('| Workload | Figure | Run | Threshold |');
    expect(two).toContain(
      'members of 100 rooms: p50 / p99 / max ms | 2 | 8.0 / 20.0 / 20.0 (n = 80) |',
    );
    // Each figure's rows together, run 1 then run 2.
    const rows = two.split('\n').filter((l) => l.includes('commits/s'));
    expect(rows.map((l) => l.split(' | ')[2])).toEqual(['1', '2']);
    expect(renderConversations({ conversations: undefined } as unknown as Results)).toBeUndefined();

    // Against the bounds only (the landed figures have a test of their own).
    const judged = (c: ConversationsRun) =>
      goals({ fanout: {}, manyRooms: {}, connections: {}, conversations: c }, []).map((g) => g.met);
    expect(judged(conv(80, 990, 1000))).toEqual([true, true]);
    expect(judged(conv(150, 700, 1000))).toEqual([false, false]);
  });

  it('judges ingress against the minimal server and many rooms against Socket.IO, as ratios', () => {
    const ingress = (perSecond: number, p99: number, clientCpu: number): IngressRun => ({
      accepted: perSecond * 10,
      failed: 0,
      perSecond,
      latency: { count: perSecond * 10, p50: p99 / 3, p99, p999: p99, max: p99 },
      processes: [
        { name: 'server', pid: 1, cpu: 0.99, rssMiB: 100 },
        { name: 'http client', pid: 2, cpu: clientCpu, rssMiB: 80 },
      ],
      loadGeneratorBound: clientCpu >= 0.9,
    });
    const none = { fanout: {}, manyRooms: {}, connections: {} };
    const judged = (thr: IngressRun, min: IngressRun) =>
      goals({ ...none, ingress: thr, ingressMinimal: min }, []);
    const met = judged(ingress(5000, 20, 0.5), ingress(9000, 12, 0.95));
    expect(met.map((g) => g.met)).toEqual([true, true]);
    expect(met[0]?.detail).toContain('5,000 vs 9,000 202s/s: 56%');
    expect(met[0]?.detail).toContain('load-generator bound with the minimal server');
    expect(met[1]?.detail).toContain('20.0 vs 12.0 ms: 1.67×');
    const not = judged(ingress(2000, 60, 0.3), ingress(9000, 12, 0.6));
    expect(not.map((g) => g.met)).toEqual([false, false]);
    expect(not[0]?.detail).not.toContain('load-generator bound');
    // One side alone: no goal.
    expect(goals({ ...none, ingress: ingress(2000, 60, 0.3) }, [])).toEqual([]);

    const table = renderTable({
      ...none,
      ingress: ingress(2000, 60, 0.3),
      ingressMinimal: ingress(9000, 12, 0.95),
      sms: undefined,
    } as unknown as Results);
    expect(table).toContain(
      '| Ingress (HTTP, 1 node) | 202s/s, p99 ms (service time: closed loop, 32 connections) | 2,000, 60.0 | Minimal HTTP server (Hono + ioredis, one XADD): 9,000, 12.0 (load-generator bound) | – | – |',
    );
    expect(table).toContain(
      '| 0.99 / 0.30 | Minimal HTTP server (Hono + ioredis, one XADD): 0.99 / 0.95 |',
    );
    // Results from before the minimal server (no CPU window either): one row, Threshold's.
    const { loadGeneratorBound: _, ...old } = ingress(2000, 60, 0.3);
    const before = renderTable({ ...none, ingress: old, sms: undefined } as unknown as Results);
    expect(before).toContain('| 2,000, 60.0 | – | – | – |');
    expect(before).not.toContain('HTTP client CPU');
    expect(before).not.toContain('Minimal HTTP server');

    const manyRooms = {
      threshold: summarise([run([step(1000, 1000, 5), step(2000, 1500, 900, false)], 2000)]),
      'socketio-streams': summarise([run([step(1000, 1000, 3), step(2000, 2000, 4)])]),
    };
    const many = goals({ ...none, manyRooms }, []);
    expect(many[0]?.met).toBe(false);
    expect(many[0]?.detail).toBe(
      '1,000 vs 2,000 deliveries/s: 0.50× (Socket.IO sustained its top rate: its figure is a lower bound)',
    );
  });

  it('checks the feature workloads against their landed figures, each in its direction', () => {
    const none = { fanout: {}, manyRooms: {}, connections: {} };
    const base = (better: 'lower' | 'higher', value: number): Baseline => ({
      workload: 'W',
      figure: 'f',
      path: 'expansion.streaming.perSecond',
      unit: better === 'lower' ? 'ms' : 'recipients/s',
      better,
      value,
      when: { 'expansion.members': 1000 },
      source: 'run X',
    });
    const r = (perSecond: number, members = 1000) =>
      ({ ...none, expansion: { members, streaming: { perSecond } } }) as unknown as Results;
    const judge = (b: Baseline, x: Results) => goals(x, [b])[0];
    expect(judge(base('lower', 20), r(21.5))?.met).toBe(true);
    expect(judge(base('lower', 20), r(21.5))?.detail).toContain('(7.5% worse)');
    expect(judge(base('lower', 20), r(25))?.met).toBe(false);
    expect(judge(base('lower', 20), r(25))?.detail).toBe(
      'regressed by 25.0%: 25.0 vs 20.0 ms landed (run X)',
    );
    expect(judge(base('lower', 20), r(10))?.detail).toContain('(50.0% better)');
    expect(judge(base('higher', 20), r(25))?.met).toBe(true);
    expect(judge(base('higher', 20), r(17))?.detail).toContain('regressed by 15.0%');
    // Another size than the landed figure's, or the workload did not run: no goal.
    expect(goals(r(25, 500), [base('lower', 20)])).toEqual([]);
    expect(goals(none, [base('lower', 20)])).toEqual([]);
    // The committed baselines each name a figure the results have, with its source.
    for (const b of BASELINES) {
      expect(b.path).toMatch(/^(conversations|expansion)\./);
      expect(b.source).toMatch(/commit [0-9a-f]{7}/);
    }
  });

  it('prints the dispatch beside the expansion: against the expansion alone and the naive growth', () => {
    const way = (perSecond: number, growth: number) => ({
      recipients: 90_000,
      perSecond,
      peakGrowthMiB: growth,
      peakRssMiB: 90 + growth,
      runs: [{ recipients: 90_000, seconds: 0.2, rssBeforeMiB: 90, peakRssMiB: 90 + growth }],
    });
    const dispatch = (perSecond: number, growthMiB: number): DispatchRun => ({
      expansion: 90_000,
      failed: 90_000,
      claimMs: 120,
      seconds: Math.round((90_000 / perSecond) * 1000) / 1000,
      perSecond,
      rssIdleMiB: 160,
      peakRssMiB: 160 + growthMiB,
      growthMiB,
      peakByQuarterMiB: [160 + growthMiB / 2, 160 + growthMiB, 160 + growthMiB, 160 + growthMiB],
      hwm: true,
    });
    const r: ExpansionRun = {
      members: 100_000,
      muted: 10_000,
      pageSize: 1000,
      streaming: way(500_000, 5),
      naive: way(600_000, 20),
      speedRatio: 0.83,
      memoryRatio: 0.25,
      node: { count: 90_000, seconds: 0.1, perSecond: 900_000, rssBeforeMiB: 160, peakRssMiB: 162 },
      dispatch: {
        pageSize: 500,
        pollMs: 25,
        sampleMs: 50,
        perSecond: 45_000,
        claimMs: 120,
        growthMiB: 4,
        speedRatio: 0.09,
        memoryRatio: 0.2,
        runs: [dispatch(30_000, 6), dispatch(45_000, 4), dispatch(50_000, 3)],
      },
    };
    const rows = renderExpansion(r).split('\n');
    expect(rows).toHaveLength(7);
    const [speed, memory] = rows.slice(5);
    expect(speed).toMatch(/^\| Dispatch \| .*pages of 500.*median of 3/);
    // The median run's own figures: its seconds, what it recorded.
    expect(speed).toContain('90,000 recorded, 90,000 failed');
    expect(speed).toContain('| 45,000 (2 s) | | 0.09× the expansion alone |');
    expect(memory).toContain(
      '(idle → peak, VmHWM; peak so far at 25/50/75/100 % recorded: 162 → 164 → 164 → 164)',
    );
    expect(memory).toContain('| 4 (160 → 164) | 20 | 0.2× |');
  });

  it('counts and times only the messages stamped inside the measured window', () => {
    const receiver = new Receiver();
    const t = now();
    receiver.window({ from: t - 1000, to: t, sliceMs: 500 });
    receiver.receive(t - 2000); // warm-up
    receiver.receive(stampOfFrame(`{"type":"message","seq":1,"body":"${body(t - 10)}","ts":1}`));
    receiver.receive(stampOfFrame(`{"type":"message","seq":2,"body":"${body(t - 900)}","ts":1}`));
    const r = receiver.report();
    expect([r.total, r.count, r.negative]).toEqual([3, 2, 0]);
    const p = percentiles(merge([r.histogram]));
    expect(p.p50).toBeGreaterThanOrEqual(10);
    expect(p.p50).toBeLessThan(2000);
    // Slice by slice, by stamp: the early message in the first half, the late in the second.
    const [first, last] = r.slices.map((s) => percentiles(merge([s])));
    expect(first?.p50).toBeGreaterThanOrEqual(900);
    expect(last?.p50).toBeLessThan(900);
  });

  it('counts receipts that arrive before their stamp', () => {
    const receiver = new Receiver();
    const t = now();
    receiver.window({ from: t - 1000, to: t + 1000, sliceMs: 1000 });
    receiver.receive(t + 500);
    expect(receiver.report().negative).toBe(1);
  });

  it('fails a step whose latency grows through the window, not one with jitter', () => {
    expect(trendingUp(2, 30)).toBe(true);
    expect(trendingUp(0.4, 1.2)).toBe(false);
    expect(trendingUp(20, 35)).toBe(false);
  });

  it('bisects between the last rate sustained and the first not, in steps of 50 msg/s', () => {
    expect(bisect(2000, 8000)).toBe(5000);
    expect(bisect(1000, 1500)).toBe(1250);
    expect(bisect(1000, 1100)).toBe(1050);
    expect(bisect(1000, 1050)).toBeUndefined();
  });

  it('retries steps disturbed by outside load or publisher lag; flags load-generator bound ones', () => {
    expect(disturbed(0.5, 0)).toBe(true);
    expect(disturbed(0.1, 80)).toBe(true);
    expect(disturbed(0.1, 10)).toBe(false);
    expect(loadGeneratorBound(0.95, 1)).toBe(true);
    expect(loadGeneratorBound(0.6, 1)).toBe(false);
  });
});
