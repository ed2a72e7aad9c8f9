/**
 * Pure pieces of the report: medians over runs, the goals of the issue, the Markdown table
 * (printed and written into the README between its bench markers).
 */
import type { Machine } from './machine.ts';
import type { ConnectionsRun } from '../workloads/connections.ts';
import type { ConversationsRun } from '../workloads/conversations.ts';
import type { ExpansionRun } from '../workloads/expansion.ts';
import type { IdleRun } from '../workloads/idle.ts';
import { INGRESS_LABELS, type IngressRun } from '../workloads/ingress.ts';
import type { RoomsRun } from '../workloads/rooms.ts';
import type { SmsRun } from '../workloads/sms.ts';
import type { RedisMode } from '../systems/redis.ts';
import { SYSTEM_LABELS, type SystemName } from '../systems/targets.ts';
import landed from '../baselines.json' with { type: 'json' };

export interface RateSummary {
  rate: number;
  /** Sustained in a majority of all the runs (a rate only some reached or probed is not). */
  sustained: boolean;
  delivered: number;
  p50: number;
  p99: number;
  p999: number;
  /** Percentiles at or above this (ms) are missing receipts, not measured latency. */
  ceilingMs: number | undefined;
  committed: number | undefined;
  /** The load generators were near their cores' capacity in a majority of the runs' steps. */
  loadGeneratorBound: boolean;
  /** Still disturbed (outside load, publisher lag) after the retries in a majority of them. */
  disturbed: boolean;
  /** Median CPU (share of a core) of each process over the measured window. */
  cpu: Record<string, number>;
}

export interface RoomsSummary {
  saturation: number;
  saturationRate: number;
  /** The median run sustained every rate it measured: its saturation is at least that. */
  lowerBound: boolean;
  maxCommitted: number | undefined;
  byRate: RateSummary[];
  peakRssMiB: Record<string, number>;
  runs: RoomsRun[];
}

export interface Results {
  date: string;
  mode: 'quick' | 'full';
  /** The flags of a run limited by --only, --systems or --profile (not for the README). */
  partial?: string | undefined;
  runs: number;
  seconds: number;
  machine: Machine;
  redis: string;
  config: Record<string, unknown>;
  fanout: Partial<Record<SystemName, RoomsSummary>>;
  manyRooms: Partial<Record<SystemName, RoomsSummary>>;
  /** Threshold, one node. */
  ingress: IngressRun | undefined;
  /** The minimal HTTP server under the same load (absent in results from before it). */
  ingressMinimal?: IngressRun | undefined;
  connections: Partial<Record<'threshold' | 'socketio-streams', ConnectionsRun>>;
  sms: SmsRun | undefined;
  /** `--redis cluster|both`: Threshold's room workloads on a Redis Cluster (peers never). */
  cluster?: ClusterFigures | undefined;
  /** The idle node, on each Redis it ran on. */
  idle?: Partial<Record<RedisMode, IdleRun>> | undefined;
  /** Conversations (Threshold only): member lists, read markers, commit cost by room size. */
  conversations?: ConversationsRun | undefined;
  /** Tag expansion (Threshold's streaming merge vs the naive way, side by side). */
  expansion?: ExpansionRun | undefined;
  goals: Goal[];
}

export interface ClusterFigures {
  masters: number;
  fanout?: RoomsSummary | undefined;
  manyRooms?: RoomsSummary | undefined;
}

/** The median of numbers (the mean of the two middle ones for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * The item whose `key` is the median (the lower of the two middle ones for an even count):
 * a whole run, so every figure reported with it comes from one measurement.
 */
export function medianItem<T>(items: T[], key: (t: T) => number): T | undefined {
  return [...items].sort((a, b) => key(a) - key(b))[Math.floor((items.length - 1) / 2)];
}

/** The median, run by run and rate by rate, of several runs of one system. */
export function summarise(runs: RoomsRun[]): RoomsSummary {
  const rates = [...new Set(runs.flatMap((r) => r.steps.map((s) => s.rate)))].sort((a, b) => a - b);
  const committed = runs.flatMap((r) => (r.maxCommitted === undefined ? [] : [r.maxCommitted]));
  const peak: Record<string, number> = {};
  for (const r of runs)
    for (const [name, mib] of Object.entries(r.peakRssMiB))
      peak[name] = Math.max(peak[name] ?? 0, mib);
  // The median run's saturation, so the figure and its rate come from a step that was measured.
  const mid = medianItem(runs, (r) => r.saturation);
  return {
    saturation: mid?.saturation ?? 0,
    saturationRate: mid?.saturationRate ?? 0,
    lowerBound: mid?.lowerBound ?? false,
    maxCommitted: committed.length > 0 ? median(committed) : undefined,
    byRate: rates.map((rate) => {
      const steps = runs.flatMap((r) => r.steps.filter((s) => s.rate === rate));
      const cpu: Record<string, number> = {};
      for (const name of new Set(steps.flatMap((s) => s.processes.map((p) => p.name))))
        cpu[name] = median(
          steps.flatMap((s) => s.processes.filter((p) => p.name === name).map((p) => p.cpu)),
        );
      const stepCommitted = steps.flatMap((s) => (s.committed === undefined ? [] : [s.committed]));
      return {
        rate,
        // Over every run, not only those that reached the rate (or probed it).
        sustained: steps.filter((s) => s.sustained).length * 2 > runs.length,
        delivered: median(steps.map((s) => s.delivered)),
        p50: median(steps.map((s) => s.latency.p50)),
        p99: median(steps.map((s) => s.latency.p99)),
        p999: median(steps.map((s) => s.latency.p999)),
        ceilingMs: ceiling(steps.flatMap((s) => s.latency.ceilingMs ?? [])),
        committed: stepCommitted.length > 0 ? median(stepCommitted) : undefined,
        loadGeneratorBound: steps.filter((s) => s.loadGeneratorBound).length * 2 > steps.length,
        disturbed: steps.filter((s) => s.disturbed).length * 2 > steps.length,
        cpu,
      };
    }),
    peakRssMiB: peak,
    runs,
  };
}

const ceiling = (xs: number[]) => (xs.length > 0 ? Math.min(...xs) : undefined);

/** A latency figure; one at or above the ceiling was set by missing receipts: "> ceiling". */
export function latencyFigure(ms: number, ceilingMs: number | undefined): string {
  return ceilingMs !== undefined && ms >= ceilingMs ? `> ${fmt(ceilingMs)}` : fmt(ms, 1);
}

export interface Goal {
  goal: string;
  met: boolean | undefined;
  detail: string;
}

const fmt = (x: number | undefined, digits = 0) =>
  x === undefined || Number.isNaN(x)
    ? '–'
    : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Where each goal of the issue stands, from the figures of one run. */
export function goals(
  r: Pick<Results, 'fanout' | 'manyRooms' | 'connections'> &
    Partial<Pick<Results, 'idle' | 'conversations' | 'ingress' | 'ingressMinimal' | 'expansion'>>,
  baselines: Baseline[] = BASELINES,
): Goal[] {
  const out: Goal[] = [];
  const thr = r.fanout.threshold;
  const sio = r.fanout['socketio-streams'];
  if (thr && sio) {
    const ratio = sio.saturation > 0 ? thr.saturation / sio.saturation : Number.POSITIVE_INFINITY;
    out.push({
      goal: 'Room fan-out: Threshold ≥ 2× the deliveries/s of Socket.IO + redis-streams-adapter at saturation',
      met: thr.saturation > 0 && ratio >= 2,
      detail:
        `${fmt(thr.saturation)} vs ${fmt(sio.saturation)} deliveries/s: ${fmt(ratio, 2)}×` +
        (thr.lowerBound ? ' (lower bound: Threshold sustained its top rate)' : ''),
    });
    const both = thr.byRate.filter(
      (t) => t.sustained && sio.byRate.some((s) => s.rate === t.rate && s.sustained),
    );
    const lower = both.filter(
      (t) => t.p99 <= (sio.byRate.find((s) => s.rate === t.rate)?.p99 ?? 0),
    );
    out.push({
      goal: "Room fan-out: p99 no higher than Socket.IO + redis-streams-adapter's at every fixed rate both sustain",
      met: both.length === 0 ? undefined : lower.length === both.length,
      detail:
        both.length === 0
          ? 'no rate sustained by both'
          : both
              .map((t) => {
                const s = sio.byRate.find((x) => x.rate === t.rate);
                const theirs = s ? latencyFigure(s.p99, s.ceilingMs) : '–';
                return `${fmt(t.rate)} msg/s: p99 ${latencyFigure(t.p99, t.ceilingMs)} vs ${theirs} ms`;
              })
              .join('; '),
    });
  }
  const many = r.manyRooms.threshold;
  const manySio = r.manyRooms['socketio-streams'];
  if (many && manySio) {
    const ratio = manySio.saturation > 0 ? many.saturation / manySio.saturation : Number.NaN;
    const bounds = [
      many.lowerBound ? 'Threshold sustained its top rate: its figure is a lower bound' : '',
      manySio.lowerBound ? 'Socket.IO sustained its top rate: its figure is a lower bound' : '',
    ].filter(Boolean);
    out.push({
      goal: "Many rooms: Threshold's deliveries/s at saturation ≥ Socket.IO + redis-streams-adapter's",
      met: many.saturation > 0 && many.saturation >= manySio.saturation,
      detail:
        `${fmt(many.saturation)} vs ${fmt(manySio.saturation)} deliveries/s: ${fmt(ratio, 2)}×` +
        (bounds.length > 0 ? ` (${bounds.join('; ')})` : ''),
    });
  }
  const mThr = r.manyRooms.threshold?.maxCommitted;
  const mRaw = r.manyRooms.raw?.maxCommitted;
  if (mThr !== undefined && mRaw !== undefined) {
    const share = mRaw > 0 ? mThr / mRaw : 0;
    // The raw pipeline sustaining its top rate means its capacity was not reached: the share
    // is an upper bound (Threshold's own top rate passing makes it a lower one).
    const bound = r.manyRooms.raw?.lowerBound
      ? ' (upper bound: the raw pipeline sustained its top rate)'
      : r.manyRooms.threshold?.lowerBound
        ? ' (lower bound: Threshold sustained its top rate)'
        : '';
    out.push({
      goal: "Many rooms: Threshold's committed msg/s ≥ 50% of the raw pipeline's",
      met: share >= 0.5,
      detail: `${fmt(mThr)} vs ${fmt(mRaw)} committed/s: ${fmt(share * 100)}%${bound}`,
    });
  }
  out.push(...ingressGoals(r.ingress, r.ingressMinimal));
  const conn = r.connections.threshold;
  if (conn) {
    out.push({
      goal: '10,000 idle connections on one node cost < 20 KiB RSS each',
      met: conn.kibPerConnection < 20,
      detail: `${fmt(conn.kibPerConnection, 1)} KiB per connection (${fmt(conn.rssBeforeMiB, 1)} → ${fmt(conn.rssAfterMiB, 1)} MiB for ${fmt(conn.connections)})`,
    });
  }
  const conv = r.conversations;
  if (conv) {
    out.push({
      goal: `Conversations: GET /v1/me/rooms for a member of ${fmt(conv.rooms)} rooms answers in well under 100 ms (p99 < 100 ms while messages flow)`,
      met: conv.list.count > 0 && conv.list.p99 < 100,
      detail: `p50 ${fmt(conv.list.p50, 1)}, p99 ${fmt(conv.list.p99, 1)} ms (${fmt(conv.list.count)} calls); alone p50 ${fmt(conv.alone.latency.p50, 1)} ms, ${fmt(conv.alone.nodeCpuMs + conv.alone.redisCpuMs, 1)} ms of server CPU per call`,
    });
    const { big, small, ratio } = conv.commits;
    out.push({
      goal: `Conversations: a room of ${fmt(big.members)} members commits as fast as a room of 2 (commits/s ≥ 0.8× of its)`,
      met: small.perSecond > 0 && ratio >= 0.8,
      detail: `${fmt(big.perSecond)} vs ${fmt(small.perSecond)} commits/s: ${fmt(ratio, 2)}×; server CPU per commit ${fmt(big.nodeCpuUs + big.redisCpuUs)} vs ${fmt(small.nodeCpuUs + small.redisCpuUs)} µs`,
    });
  }
  out.push(...baselineGoals(r, baselines));
  const idle = r.idle?.cluster;
  if (idle) {
    out.push({
      goal: 'An idle node on the Redis Cluster uses < 5% of a core',
      met: idle.nodeCpuPercent < 5,
      detail: `${fmt(idle.nodeCpuPercent, 1)}% over ${fmt(idle.seconds)} s; Redis served ${fmt(idle.commandsPerSecond, 1)} commands/s`,
    });
  }
  return out;
}

/** A feature workload's figure from when it landed (bench/baselines.json). */
export interface Baseline {
  workload: string;
  figure: string;
  /** Dotted path of the figure in a run's results. */
  path: string;
  unit: string;
  better: 'lower' | 'higher';
  value: number;
  /** Dotted paths the run must match for the figures to compare (rooms, audience). */
  when: Record<string, number>;
  /** Which run (date, commit) the value is from. */
  source: string;
}

export const BASELINES = landed.figures as unknown as Baseline[];

/** How far a figure may be worse than its landed one. */
export const REGRESSION_TOLERANCE = 0.1;

const at = (x: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>(
      (o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined),
      x,
    );

/**
 * Each feature workload that ran, figure by figure, against its landed figure: met when no
 * more than 10% worse (a latency higher, a rate lower). Workloads that did not run, or ran
 * on another size than the landed figure's, are left out.
 */
function baselineGoals(r: unknown, baselines: Baseline[]): Goal[] {
  return baselines.flatMap((b) => {
    const value = at(r, b.path);
    if (typeof value !== 'number') return [];
    if (Object.entries(b.when).some(([path, v]) => at(r, path) !== v)) return [];
    // Positive: worse than landed, as a share of the landed figure.
    const worse = (b.better === 'lower' ? value - b.value : b.value - value) / b.value;
    const digits = b.unit === 'ms' ? 1 : 0;
    const figures = `${fmt(value, digits)} vs ${fmt(b.value, digits)} ${b.unit} landed (${b.source})`;
    const pct = fmt(Math.abs(worse) * 100, 1);
    return [
      {
        goal: `${b.workload}: ${b.figure} within ${fmt(REGRESSION_TOLERANCE * 100)}% of its landed figure (${b.better} is better)`,
        met: worse <= REGRESSION_TOLERANCE,
        detail:
          worse > REGRESSION_TOLERANCE
            ? `regressed by ${pct}%: ${figures}`
            : worse > 0
              ? `within ${fmt(REGRESSION_TOLERANCE * 100)}% of its landed figure (${pct}% worse): ${figures}`
              : `within ${fmt(REGRESSION_TOLERANCE * 100)}% of its landed figure (${pct}% better): ${figures}`,
      },
    ];
  });
}

/**
 * Ingress against the minimal HTTP server of the same run: Threshold's 202s/s ≥ 50% of its,
 * and a p99 ≤ 2× its. When the HTTP client was the limit for the minimal server, its figures
 * are bounds (its throughput a lower one, its p99 an upper one), and the detail says so.
 */
function ingressGoals(thr: IngressRun | undefined, min: IngressRun | undefined): Goal[] {
  if (!thr || !min) return [];
  const clientCpu = (x: IngressRun) =>
    x.processes.filter((p) => p.name === 'http client').reduce((a, p) => a + p.cpu, 0);
  const bound = (x: IngressRun, who: string) =>
    x.loadGeneratorBound
      ? ` (load-generator bound with ${who}: the HTTP client used ${fmt(clientCpu(x), 2)} of its core)`
      : '';
  const notes = bound(min, 'the minimal server') + bound(thr, 'Threshold');
  const share = min.perSecond > 0 ? thr.perSecond / min.perSecond : Number.NaN;
  const p99 = min.latency.p99 > 0 ? thr.latency.p99 / min.latency.p99 : Number.NaN;
  return [
    {
      goal: "Ingress: Threshold's HTTP 202s/s on one node ≥ 50% of the minimal HTTP server's (Hono + ioredis, one XADD per request)",
      met: thr.perSecond > 0 && share >= 0.5,
      detail: `${fmt(thr.perSecond)} vs ${fmt(min.perSecond)} 202s/s: ${fmt(share * 100)}%${notes}`,
    },
    {
      goal: "Ingress: Threshold's p99 ≤ 2× the minimal HTTP server's",
      met: thr.accepted > 0 && p99 <= 2,
      detail: `${fmt(thr.latency.p99, 1)} vs ${fmt(min.latency.p99, 1)} ms: ${fmt(p99, 2)}×${notes}`,
    },
  ];
}

const ROOM_SYSTEMS: SystemName[] = ['threshold', 'raw', 'socketio-streams', 'socketio-redis'];

function latencyAt(s: RoomsSummary | undefined, rate: number): string {
  const r = s?.byRate.find((x) => x.rate === rate);
  if (!r) return '–';
  const cell = [r.p50, r.p99, r.p999].map((ms) => latencyFigure(ms, r.ceilingMs)).join(' / ');
  const noisy = r.disturbed ? ' (disturbed)' : '';
  return r.sustained ? `${cell}${noisy}` : `${cell} (not sustained${boundNote(r)})${noisy}`;
}

const boundNote = (r: RateSummary | undefined) =>
  r?.loadGeneratorBound ? ', load-generator bound' : '';

/**
 * The saturation cell; when the first rate not sustained was load-generator bound, the
 * harness, not the system, may have set the figure.
 */
function saturationCell(s: RoomsSummary): string {
  const failed = s.byRate.find((r) => r.rate > s.saturationRate);
  const note = failed?.loadGeneratorBound ? ' (load-generator bound)' : '';
  const atLeast = s.lowerBound ? '≥ ' : '';
  return `${atLeast}${fmt(s.saturation)} (${atLeast}${fmt(s.saturationRate)})${note}`;
}

/** Cores the server-side processes (redis-servers included) used in a step. */
const serverCpu = (r: RateSummary) =>
  Object.entries(r.cpu)
    .filter(([n]) => !/subscribers|publisher/.test(n))
    .reduce((a, [, c]) => a + c, 0);

/**
 * Server-side CPU (cores, redis-server included) at the saturation rate and the highest RSS
 * sampled during that step of the largest server process (redis-server excluded).
 */
function resources(s: RoomsSummary | undefined): string {
  const r = s?.byRate.find((x) => x.rate === s.saturationRate);
  if (!s || !r) return '–';
  const cpu = serverCpu(r);
  const rss = Object.entries(s.peakRssMiB)
    .filter(([n]) => !n.startsWith('redis-server'))
    .map(([, m]) => m);
  return `${fmt(cpu, 2)} cores / ${fmt(Math.max(...rss), 0)} MiB`;
}

function roomRows(
  name: string,
  summaries: Partial<Record<SystemName, RoomsSummary>>,
  commits: boolean,
) {
  const systems = ROOM_SYSTEMS;
  const cells = (f: (s: RoomsSummary | undefined) => string) =>
    systems.map((sys) => f(summaries[sys])).join(' | ');
  // Latency rows: every rate Threshold and at least one other system sustained (where they can
  // be compared), and the highest rate any system sustained.
  const sustained = (sys: SystemName) =>
    new Set(summaries[sys]?.byRate.filter((r) => r.sustained).map((r) => r.rate) ?? []);
  const all = systems.map(sustained);
  const others = systems.filter((s) => s !== 'threshold').map(sustained);
  const compared = [...sustained('threshold')].filter((rate) => others.some((s) => s.has(rate)));
  const highest = Math.max(0, ...all.flatMap((s) => [...s]));
  const rates = [...new Set([...compared, ...(highest > 0 ? [highest] : [])])].sort(
    (a, b) => a - b,
  );
  const rows = [
    `| ${name} | deliveries/s at saturation (offered msg/s) | ${cells((s) =>
      s ? saturationCell(s) : '–',
    )} |`,
  ];
  if (commits)
    rows.push(
      `| ${name} | committed msg/s, highest seen | ${cells((s) => fmt(s?.maxCommitted))} |`,
    );
  for (const rate of rates)
    rows.push(
      `| ${name} | p50 / p99 / p99.9 ms at ${fmt(rate)} msg/s | ${cells((s) => latencyAt(s, rate))} |`,
    );
  rows.push(
    `| ${name} | server CPU incl. redis-server / peak RSS of the largest server process excl. redis-server, at saturation | ${cells(resources)} |`,
  );
  return rows;
}

export function renderTable(r: Results): string {
  const head = `| Workload | Figure | ${ROOM_SYSTEMS.map((s) => SYSTEM_LABELS[s]).join(' | ')} |`;
  const sep = `|${' --- |'.repeat(ROOM_SYSTEMS.length + 2)}`;
  const only = (cell: string, socketio = '–') => `${cell} | – | ${socketio} | –`;
  const rows = [
    head,
    sep,
    ...roomRows('Room fan-out', r.fanout, false),
    ...roomRows('Many rooms', r.manyRooms, true),
  ];
  rows.push(...ingressRows(r));
  const c = r.connections;
  const conn = (x: ConnectionsRun | undefined) =>
    x
      ? `${fmt(x.kibPerConnection, 1)} KiB, ${fmt(x.connectPerSecond)}/s` +
        (x.serverCpuUsPerConnect === undefined ? '' : `, ${fmt(x.serverCpuUsPerConnect)} µs`)
      : '–';
  if (c.threshold || c['socketio-streams'])
    rows.push(
      `| ${fmt(c.threshold?.connections ?? c['socketio-streams']?.connections)} idle connections, 1 node | RSS per connection, connects/s, server CPU per connect | ${only(conn(c.threshold), conn(c['socketio-streams']))} |`,
    );
  if (r.sms)
    rows.push(
      `| SMS outbox (${fmt(r.sms.jobs)} jobs) | jobs/s into the Twilio stand-in | ${only(fmt(r.sms.jobsPerSecond))} |`,
    );
  const notes = r.ingressMinimal ? [FOOTNOTES[0], INGRESS_NOTE, ...FOOTNOTES.slice(1)] : FOOTNOTES;
  return [...rows, '', ...notes].join('\n');
}

/**
 * The ingress rows: Threshold (one node) in its column, and the minimal HTTP server, the
 * ingress path's ceiling, in the raw pipeline's (named in its cell), from the same run.
 */
function ingressRows(r: Results): string[] {
  const thr = r.ingress;
  const min = r.ingressMinimal;
  if (!thr && !min) return [];
  const bound = (x: IngressRun) => (x.loadGeneratorBound ? ' (load-generator bound)' : '');
  const figures = (x: IngressRun | undefined) =>
    x ? `${fmt(x.perSecond)}, ${fmt(x.latency.p99, 1)}${bound(x)}` : '–';
  const named = (x: IngressRun | undefined, cell: (x: IngressRun) => string) =>
    x ? `${INGRESS_LABELS.minimal}: ${cell(x)}` : '–';
  const cpu = (x: IngressRun) => {
    const client = x.processes.filter((p) => p.name === 'http client');
    const servers = x.processes.filter((p) => p.name !== 'http client');
    const sum = (ps: typeof x.processes) => ps.reduce((a, p) => a + p.cpu, 0);
    return client.length > 0
      ? `${fmt(sum(servers), 2)} / ${fmt(sum(client), 2)}`
      : `${fmt(sum(servers), 2)} / –`;
  };
  const name = 'Ingress (HTTP, 1 node)';
  const rows = [
    `| ${name} | 202s/s, p99 ms (service time: closed loop, 32 connections) | ${figures(thr)} | ${named(min, figures)} | – | – |`,
  ];
  // CPU of each side, only in results that measured it over the window (not the first ones).
  if ((thr?.loadGeneratorBound ?? min?.loadGeneratorBound) !== undefined)
    rows.push(
      `| ${name} | server CPU incl. redis-server / HTTP client CPU, cores | ${thr ? cpu(thr) : '–'} | ${named(min, cpu)} | – | – |`,
    );
  return rows;
}

/** The ingress row's raw-pipeline column, in results that have the minimal server. */
const INGRESS_NOTE =
  "Ingress: its raw-pipeline column is the minimal HTTP server (Hono + `@hono/node-server` + ioredis, one XADD per request, no auth or validation, nothing consuming), under the same load as Threshold, on a redis-server of its own: the ingress path's ceiling on the same stack.";

/** What the table's cells cannot say. */
const FOOTNOTES = [
  "Raw pipeline: its receivers are in-process counters in its two consumer processes (no WebSocket, no client process), so its figures are the data path's ceiling, not a peer's.",
  '"≥": every rate measured was sustained (capacity not reached). "> N": a percentile set by receipts still missing after the N ms drain. "load-generator bound": the publisher and subscribers (ingress: the HTTP client) used ≥ 90% of their cores. "(disturbed)": outside load or publisher lag beyond their bounds even after the retries.',
];

export function renderGoals(list: Goal[]): string {
  return list
    .map(
      (g) =>
        `- ${g.met === undefined ? 'n/a' : g.met ? 'met' : 'NOT met'}: ${g.goal} — ${g.detail}`,
    )
    .join('\n');
}

export function renderMachine(r: Results): string {
  const m = r.machine;
  return (
    `${r.mode} run of ${r.date} (${r.runs} run${r.runs > 1 ? 's' : ''} per system, medians; commit ${m.commit}): ` +
    `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}, Redis ${m.redis} ` +
    `(${r.redis}). Pinning: ${m.pinning}.`
  );
}

/** cluster / standalone; "≥"/"≤" when one side's figure is only a bound (it sustained its top rate). */
function ratioCell(
  cluster: number | undefined,
  standalone: number | undefined,
  clusterBound = false,
  standaloneBound = false,
): string {
  if (cluster === undefined || standalone === undefined || !(standalone > 0)) return '–';
  if (clusterBound && standaloneBound) return '–';
  const sign = clusterBound ? '≥ ' : standaloneBound ? '≤ ' : '';
  return `${sign}${fmt(cluster / standalone, 2)}×`;
}

/** The highest rate both sustained. */
function commonRate(a: RoomsSummary | undefined, b: RoomsSummary | undefined): number | undefined {
  const rates = (s: RoomsSummary | undefined) =>
    s?.byRate.filter((r) => r.sustained).map((r) => r.rate) ?? [];
  const theirs = new Set(rates(b));
  const both = rates(a).filter((r) => theirs.has(r));
  return both.length > 0 ? Math.max(...both) : undefined;
}

/** One row of the cluster table: what it shows (to line runs up), then its cells. */
type ClusterRow = { kind: string; cells: [string, string, string, string, string] };

function clusterRoomRows(
  name: string,
  standalone: RoomsSummary | undefined,
  cluster: RoomsSummary | undefined,
  commits: boolean,
): ClusterRow[] {
  if (!standalone && !cluster) return [];
  const row = (
    kind: string,
    figure: string,
    f: (s: RoomsSummary | undefined) => string,
    ratio: string,
  ): ClusterRow => ({
    kind: `${name} ${kind}`,
    cells: [name, figure, f(standalone), f(cluster), ratio],
  });
  const rows = [
    row(
      'saturation',
      'deliveries/s at saturation (offered msg/s)',
      (s) => (s ? saturationCell(s) : '–'),
      ratioCell(
        cluster?.saturation,
        standalone?.saturation,
        cluster?.lowerBound,
        standalone?.lowerBound,
      ),
    ),
  ];
  if (commits)
    rows.push(
      row(
        'committed',
        'committed msg/s, highest seen',
        (s) => fmt(s?.maxCommitted),
        ratioCell(
          cluster?.maxCommitted,
          standalone?.maxCommitted,
          cluster?.lowerBound,
          standalone?.lowerBound,
        ),
      ),
    );
  const rate = commonRate(standalone, cluster);
  if (rate !== undefined) {
    const p99 = (s: RoomsSummary | undefined) => s?.byRate.find((r) => r.rate === rate)?.p99;
    rows.push(
      row(
        'latency',
        `p50 / p99 / p99.9 ms at ${fmt(rate)} msg/s (highest rate both sustained)`,
        (s) => latencyAt(s, rate),
        `p99 ${ratioCell(p99(cluster), p99(standalone))}`,
      ),
    );
  }
  const atSaturation = (s: RoomsSummary | undefined) =>
    s?.byRate.find((r) => r.rate === s.saturationRate);
  const cores = (s: RoomsSummary | undefined) => {
    const r = atSaturation(s);
    return r ? serverCpu(r) : undefined;
  };
  rows.push(
    row(
      'resources',
      'server CPU incl. redis-servers / peak RSS of the largest node, at saturation',
      resources,
      `CPU ${ratioCell(cores(cluster), cores(standalone))}`,
    ),
  );
  return rows;
}

function clusterRows(r: Results): ClusterRow[] {
  const c = r.cluster;
  // Standalone figures alone are the peers' table's.
  if (!c && !r.idle) return [];
  const rows = [
    ...clusterRoomRows('Room fan-out', r.fanout.threshold, c?.fanout, false),
    ...clusterRoomRows('Many rooms', r.manyRooms.threshold, c?.manyRooms, true),
  ];
  const { standalone: s, cluster: k } = r.idle ?? {};
  if (s || k) {
    const name = 'Idle node (1 node, no clients)';
    const cell = (x: number | undefined, unit = '') =>
      x === undefined ? '–' : `${fmt(x, 1)}${unit}`;
    const idle = (kind: string, figure: string, f: (x: IdleRun) => number, unit = '') => ({
      kind: `idle ${kind}`,
      cells: [
        name,
        figure,
        cell(s && f(s), unit),
        cell(k && f(k), unit),
        ratioCell(k && f(k), s && f(s)),
      ] as ClusterRow['cells'],
    });
    rows.push(
      idle(
        'cpu',
        `node CPU, % of one core (${fmt(k?.seconds ?? s?.seconds)} s)`,
        (x) => x.nodeCpuPercent,
        '%',
      ),
      idle(
        'commands',
        'Redis commands/s, summed over servers (commands inside scripts included)',
        (x) => x.commandsPerSecond,
      ),
      idle('redis', 'redis-server CPU, % of one core (all servers)', (x) => x.redisCpuPercent, '%'),
    );
  }
  return rows;
}

/**
 * Threshold on one redis-server beside Threshold on a Redis Cluster, from the same run: the
 * room workloads and the idle node, with cluster / standalone ratios. Several runs: a "Run"
 * column, each figure's rows together.
 */
export function renderCluster(input: Results | Results[]): string | undefined {
  const runs = Array.isArray(input) ? input : [input];
  const all = runs.map(clusterRows);
  if (all.every((rows) => rows.length === 0)) return undefined;
  const masters = runs.find((r) => r.cluster)?.cluster?.masters ?? 3;
  const several = runs.length > 1;
  const kinds = [...new Set(all.flat().map((row) => row.kind))];
  const lines = kinds.flatMap((kind) =>
    all.flatMap((rows, i) =>
      rows
        .filter((row) => row.kind === kind)
        .map(({ cells: [w, f, ...rest] }) =>
          several
            ? `| ${[w, f, String(i + 1), ...rest].join(' | ')} |`
            : `| ${[w, f, ...rest].join(' | ')} |`,
        ),
    ),
  );
  const head = [
    'Workload',
    'Figure',
    ...(several ? ['Run'] : []),
    'Threshold, 1 redis-server',
    `Threshold, Redis Cluster (${masters} masters)`,
    'Cluster / standalone',
  ];
  return [`| ${head.join(' | ')} |`, `|${' --- |'.repeat(head.length)}`, ...lines].join('\n');
}

/** What an idle node's Redis commands were, per second, busiest first (the log's detail). */
export function renderIdleCommands(run: IdleRun, top = 8): string {
  const list = (cs: IdleRun['commands']) =>
    cs
      .slice(0, top)
      .map((c) => `${c.command} ${fmt(c.perSecond, 2)}/s (${fmt(c.usecPerSecond, 0)} µs/s)`)
      .join(', ');
  return [
    `  ${run.redis}: node ${fmt(run.nodeCpuPercent, 2)}% of a core, redis ${fmt(run.redisCpuPercent, 2)}%, ${fmt(run.commandsPerSecond, 2)} commands/s (outside load ${run.outsideCores} cores): ${list(run.commands)}`,
    ...(run.servers.length > 1
      ? run.servers.map(
          (s) => `    ${s.name}: ${fmt(s.commandsPerSecond, 2)} commands/s: ${list(s.commands)}`,
        )
      : []),
  ].join('\n');
}

/** The machine line of the cluster table: the run's, and what the cluster was. */
export function renderClusterMachine(r: Results): string {
  const masters = r.cluster?.masters ?? 3;
  return (
    `${renderMachine(r)} Redis Cluster: ${masters} masters, no replicas, each a ${r.redis}, ` +
    'pinned with the servers like the single redis-server. In each run Threshold runs on ' +
    'standalone, then on the cluster, one after the other.'
  );
}

/** p50 / p99 / max ms, and how many samples (a p99 of few samples is close to the max). */
function spread(p: { p50: number; p99: number; max: number; count: number }): string {
  return `${fmt(p.p50, 1)} / ${fmt(p.p99, 1)} / ${fmt(p.max, 1)} (n = ${fmt(p.count)})`;
}

function conversationRows(c: ConversationsRun): [string, string][] {
  const { big, small } = c.commits;
  const sizes = `${fmt(big.members)}-member room vs 2-member room`;
  const cpuRatio =
    small.nodeCpuUs + small.redisCpuUs > 0
      ? (big.nodeCpuUs + big.redisCpuUs) / (small.nodeCpuUs + small.redisCpuUs)
      : Number.NaN;
  return [
    [
      `GET /v1/me/rooms?limit=20, member of ${fmt(c.rooms)} rooms, nothing else running: p50 / p99 / max ms; node + redis-server CPU per call`,
      `${spread(c.alone.latency)}; ${fmt(c.alone.nodeCpuMs, 1)} + ${fmt(c.alone.redisCpuMs, 1)} ms`,
    ],
    [
      `GET /v1/me/rooms?limit=20, member of ${fmt(c.rooms)} rooms, messages flowing: p50 / p99 / max ms`,
      spread(c.list),
    ],
    [
      `GET /v1/me/rooms?limit=20&after= (next page), member of ${fmt(c.rooms)} rooms: p50 / p99 / max ms`,
      spread(c.listAfter),
    ],
    [
      `GET /v1/me/rooms?limit=20 (both pages), members of ${fmt(c.otherRooms)} rooms: p50 / p99 / max ms`,
      spread(c.listOthers),
    ],
    ['GET /v1/rooms/:room/messages?before=&limit=20: p50 / p99 / max ms', spread(c.latest)],
    ['PUT /v1/rooms/:room/read: p50 / p99 / max ms', spread(c.read)],
    [
      `meanwhile: HTTP publishes into the ${fmt(c.rooms)} rooms (offered msg/s, committed); cores busy outside the bench`,
      `${fmt(c.flow.rate)} msg/s, ${fmt(c.flow.committed)} of ${fmt(c.flow.accepted)} committed; ${fmt(c.outsideCores, 2)}` +
        (c.errors > 0 ? `; ${fmt(c.errors)} reader errors` : ''),
    ],
    [
      `commits/s (?wait=1, closed loop): ${sizes}`,
      `${fmt(big.perSecond)} vs ${fmt(small.perSecond)}: ${fmt(c.commits.ratio, 2)}×` +
        (big.failed + small.failed > 0 ? ` (${fmt(big.failed + small.failed)} not committed)` : ''),
    ],
    [
      `commit latency (?wait=1) p50 / p99 ms: ${sizes}`,
      `${fmt(big.latency.p50, 1)} / ${fmt(big.latency.p99, 1)} vs ${fmt(small.latency.p50, 1)} / ${fmt(small.latency.p99, 1)}`,
    ],
    [
      `server CPU per commit, node + redis-server µs: ${sizes}`,
      `${fmt(big.nodeCpuUs)} + ${fmt(big.redisCpuUs)} vs ${fmt(small.nodeCpuUs)} + ${fmt(small.redisCpuUs)}: ${fmt(cpuRatio, 2)}×`,
    ],
  ];
}

/**
 * The conversations workload's figures (Threshold only, absolute: the peers have no such
 * API). Several runs: a "Run" column, each figure's rows together.
 */
export function renderConversations(input: Results | Results[]): string | undefined {
  const runs = (Array.isArray(input) ? input : [input]).flatMap((r) =>
    r.conversations ? [r.conversations] : [],
  );
  if (runs.length === 0) return undefined;
  const several = runs.length > 1;
  const all = runs.map(conversationRows);
  const lines = (all[0] ?? []).flatMap((_, k) =>
    all.map((rows, i) => {
      const [figure, value] = rows[k] as [string, string];
      const cells = ['Conversations', figure, ...(several ? [String(i + 1)] : []), value];
      return `| ${cells.join(' | ')} |`;
    }),
  );
  const head = ['Workload', 'Figure', ...(several ? ['Run'] : []), 'Threshold'];
  return [`| ${head.join(' | ')} |`, `|${' --- |'.repeat(head.length)}`, ...lines].join('\n');
}

/** The workload's figures as a table (Threshold's streaming merge vs the naive way). */
export function renderExpansion(r: ExpansionRun): string {
  const n = (x: number) => x.toLocaleString('en-US');
  const expr = `all - muted (${n(r.members)} − ${n(r.muted)} = ${n(r.streaming.recipients)})`;
  return [
    '| Workload | Figure | Streaming merge | Naive (read all, Set difference) | Ratio |',
    '| --- | --- | --- | --- | --- |',
    `| Expansion | ${expr}: recipients/s (median of ${r.streaming.runs.length}) | ${n(r.streaming.perSecond)} | ${n(r.naive.perSecond)} | ${r.speedRatio}× |`,
    `| Expansion | expanding process: peak RSS above its RSS before, MiB (peak RSS) | ${r.streaming.peakGrowthMiB} (${r.streaming.peakRssMiB}) | ${r.naive.peakGrowthMiB} (${r.naive.peakRssMiB}) | ${r.memoryRatio}× |`,
    `| Expansion | node, POST /v1/tags/expand (count, pages of ${n(r.pageSize)}): seconds, recipients/s, RSS before → peak MiB | ${r.node.seconds} s, ${n(r.node.perSecond)}/s, ${r.node.rssBeforeMiB} → ${r.node.peakRssMiB} | | |`,
    ...dispatchRows(r),
  ].join('\n');
}

/**
 * The dispatch rows: the node's figure in the streaming column (its expansion is the merge),
 * against the expansion alone (speed) and the naive way's growth (memory).
 */
function dispatchRows(r: ExpansionRun): string[] {
  const d = r.dispatch;
  const mid = medianItem(d.runs, (x) => x.perSecond);
  if (!mid) return [];
  const n = (x: number) => x.toLocaleString('en-US');
  const runs = d.runs.length === 1 ? 'one run' : `median of ${d.runs.length}`;
  const peak = mid.hwm ? 'VmHWM' : `VmRSS every ${d.sampleMs} ms`;
  const quarters = mid.peakByQuarterMiB.join(' → ');
  return [
    `| Dispatch | node, POST /v1/notifications to all - muted until done (pages of ${n(d.pageSize)}; 202 → done, polled every ${d.pollMs} ms, ${runs}): recipients/s (s; ${n(mid.expansion)} recorded, ${n(mid.failed)} failed; wait for the tick ${n(d.claimMs)} ms) | ${n(d.perSecond)} (${mid.seconds} s) | | ${d.speedRatio}× the expansion alone |`,
    `| Dispatch | node: peak RSS above its idle RSS during the dispatch, MiB (idle → peak, ${peak}; peak so far at 25/50/75/100 % recorded: ${quarters}); naive column: the naive expanding process's growth | ${d.growthMiB} (${mid.rssIdleMiB} → ${mid.peakRssMiB}) | ${r.naive.peakGrowthMiB} | ${d.memoryRatio}× |`,
  ];
}
