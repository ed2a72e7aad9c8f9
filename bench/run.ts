/**
 * `npm run bench [-- --quick] [-- --runs N] [-- --readme] [-- --redis standalone|cluster|both]`:
 * starts everything it measures on loopback, runs each workload against every system that can
 * do it, prints the table and writes bench/results/latest.json. `--readme` only rewrites the
 * README's Performance table from latest.json. `--redis cluster` runs Threshold's room
 * workloads on a three-master Redis Cluster instead (`both`: on each, side by side), and the
 * idle workload on it. `--rates 250,500` offers the room workloads those rates only (a partial
 * run, for comparing two versions back to back at the same load). See README, Performance.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Progress } from '../src/progress.ts';
import { machine } from './lib/machine.ts';
import { pinningFailures } from './lib/processes.ts';
import {
  type ClusterFigures,
  goals,
  medianItem,
  renderCluster,
  renderClusterMachine,
  renderConversations,
  renderExpansion,
  renderGoals,
  renderIdleCommands,
  renderMachine,
  renderTable,
  type Results,
  summarise,
} from './lib/report.ts';
import { CLUSTER_MASTERS, type RedisMode, REDIS_SETTINGS } from './systems/redis.ts';
import { SYSTEM_LABELS, type SystemName } from './systems/targets.ts';
import { runConnections } from './workloads/connections.ts';
import { type ConversationsWorkload, runConversations } from './workloads/conversations.ts';
import { type ExpansionWorkload, runExpansion } from './workloads/expansion.ts';
import { type IdleRun, runIdle } from './workloads/idle.ts';
import { runIngress } from './workloads/ingress.ts';
import { type RoomsRun, type RoomsWorkload, runRooms } from './workloads/rooms.ts';
import { runSms } from './workloads/sms.ts';

const RESULTS = fileURLToPath(new URL('results/latest.json', import.meta.url));
/** Where a run limited by --only, --systems or --profile goes: never latest.json. */
const PARTIAL = fileURLToPath(new URL('results/latest-partial.json', import.meta.url));
const README = fileURLToPath(new URL('../README.md', import.meta.url));
const START = '<!-- bench:table:start -->';
const END = '<!-- bench:table:end -->';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    readme: { type: 'boolean', default: false },
    only: { type: 'string' },
    profile: { type: 'string' },
    systems: { type: 'string' },
    /** The room workloads' offered rates (msg/s, comma-separated) instead of their steps: back-to-back comparisons. */
    rates: { type: 'string' },
    redis: { type: 'string', default: 'standalone' },
    /** The expansion workload's `all` (default 100,000; `muted` is a tenth of it). */
    'expansion-members': { type: 'string' },
  },
});
if (!['standalone', 'cluster', 'both'].includes(args.redis ?? ''))
  throw new Error(`--redis ${args.redis}: standalone, cluster or both`);
/** What Threshold runs on: one redis-server, a Redis Cluster, or each in turn (peers: standalone). */
const redisModes: RedisMode[] =
  args.redis === 'both' ? ['standalone', 'cluster'] : [args.redis as RedisMode];
if (args.profile) process.env.THRESHOLD_BENCH_PROFILE_DIR = args.profile;
/**
 * A subset or a profiled run, or one without Threshold on standalone Redis: its figures must
 * not stand for the whole bench (README).
 */
const partial = Boolean(
  args.only ||
  args.systems ||
  args.profile ||
  args.rates ||
  args['expansion-members'] ||
  !redisModes.includes('standalone'),
);

// Ctrl-C or a kill: exit through 'exit', where every child started is killed (processes.ts);
// Node's default for these signals skips it and would leave nodes and redis-servers behind.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    console.error(`\n${signal}: stopping every process the bench started`);
    process.exit(130);
  });

const quick = args.quick ?? false;
const fixedRates = args.rates?.split(',').map(Number);
if (fixedRates?.some((r) => !(r > 0))) throw new Error(`--rates ${args.rates}: positive numbers`);
const systems = args.systems?.split(',');
/**
 * Whether `--systems` names `system` (or is not given): the room workloads' systems, and for
 * the others `threshold` (every workload it runs), `minimal` (the ingress workload's minimal
 * HTTP server) and `socketio-streams` (the connections workload's peer).
 */
const on = (system: SystemName | 'minimal') => !systems || systems.includes(system);
const pick = (all: SystemName[]) => all.filter(on);
const runs = Number(args.runs ?? (quick ? 1 : 3));
const only = args.only?.split(',');
const wanted = (workload: string) => !only || only.includes(workload);
/** The idle node: when named, or in a run that puts Threshold on a Redis Cluster. */
const wantIdle = only ? only.includes('idle') : redisModes.includes('cluster');
/** The workloads besides the room ones that this run makes, by workload and system. */
const runsOf = {
  ingress: wanted('ingress') && on('threshold'),
  ingressMinimal: wanted('ingress') && on('minimal'),
  connections: wanted('connections') && on('threshold'),
  connectionsSocketio: wanted('connections') && on('socketio-streams'),
  sms: wanted('sms') && on('threshold'),
  idle: wantIdle && on('threshold'),
  conversations: wanted('conversations') && on('threshold'),
  expansion: wanted('expansion') && on('threshold'),
};
/** Which run of which workload on which system, of how many, on stderr (set once the plan is known). */
let progress = new Progress();
/** stdout, without tearing the progress line on a terminal. */
const log = (line: string) => progress.print(line);
/** A run starts: said on stdout as before, and counted on the progress line. */
const step = (label: string) => {
  progress.step(label);
  log(label);
};

// --quick: few short steps, no second try of a failed step, one probe (1–2 minutes in all).
const fanout: RoomsWorkload = {
  name: 'Room fan-out',
  prefix: 'fanout',
  rooms: 20,
  perRoom: 50,
  rates: fixedRates ?? (quick ? [500, 2000, 8000] : [250, 500, 750, 1000, 1500, 2000, 3000, 5000]),
  warmupMs: quick ? 500 : 2000,
  measureMs: quick ? 1000 : 5000,
  drainMs: quick ? 500 : 1000,
  retry: !quick,
  probes: quick ? 1 : 3,
  disturbedRetries: quick ? 1 : 2,
};
const manyRooms: RoomsWorkload = {
  name: 'Many rooms',
  prefix: 'room',
  rooms: 10_000,
  perRoom: 1,
  rates:
    fixedRates ??
    (quick
      ? [2000, 8000, 32000]
      : [1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000, 24000, 32000]),
  warmupMs: quick ? 500 : 2000,
  measureMs: quick ? 1000 : 5000,
  drainMs: quick ? 500 : 1000,
  retry: !quick,
  probes: quick ? 1 : 3,
  disturbedRetries: quick ? 1 : 2,
};
const ingress = {
  concurrency: 32,
  warmupMs: quick ? 500 : 1000,
  measureMs: quick ? 2000 : 10_000,
};
const connections = { count: 10_000, settleMs: quick ? 1000 : 3000 };
// --quick: 3,000 outbox jobs instead of 10,000 (the table's label says how many).
const sms = { rooms: 10, membersPerRoom: quick ? 300 : 1000, timeoutMs: 120_000 };
/**
 * Conversations (Threshold only): 1,000 rooms of one member; its list alone, then while
 * 250 msg/s flow into them, that member listing and reading every 500 ms (4 others every 1 s);
 * then ?wait=1 commits into a room of 10,000
 * members and one of 2, in alternating rounds. --quick: a shorter window, fewer commits.
 */
const conversations: ConversationsWorkload = {
  rooms: 1000,
  othersPerRoom: 3,
  othersPool: 30,
  otherReaders: 4,
  heavyCycleMs: 500,
  otherCycleMs: 1000,
  pageSize: 20,
  aloneLists: quick ? 20 : 50,
  rate: 250,
  warmupMs: quick ? 1000 : 2000,
  measureMs: quick ? 10_000 : 30_000,
  bigRoom: 10_000,
  commits: quick ? 1000 : 5000,
  commitRounds: quick ? 5 : 10,
  commitConcurrency: 16,
};
// 30 s of CPU from /proc in either mode, after 5 s for the node to settle once it holds every partition.
const idle = { settleMs: 5000, measureMs: 30_000 };
/**
 * Tag expansion (Threshold's streaming merge vs the naive way): `all - muted`, 100,000 − 10,000;
 * then notifications to it dispatched by the node (its default page of 500) until done.
 */
const expansion: ExpansionWorkload = {
  members: Number(args['expansion-members'] ?? 100_000),
  mutedEvery: 10,
  pageSize: 1000,
  runs: quick ? 3 : 5,
  dispatches: quick ? 1 : 3,
  dispatchPageSize: 500,
};

/**
 * The room workloads, system by system: each run starts the system once for both (fan-out,
 * then many rooms). The classic pub/sub adapter runs the fan-out only, and in full runs only:
 * --quick keeps to the three systems.
 */
function roomsPlan() {
  const plan = [
    {
      w: fanout,
      key: 'fanout' as const,
      only: 'fanout',
      on: quick
        ? ['threshold', 'raw', 'socketio-streams']
        : ['threshold', 'raw', 'socketio-streams', 'socketio-redis'],
    },
    {
      w: manyRooms,
      key: 'manyRooms' as const,
      only: 'many-rooms',
      on: ['threshold', 'raw', 'socketio-streams'],
    },
  ].filter((p) => wanted(p.only));
  return pick(['threshold', 'raw', 'socketio-streams', 'socketio-redis']).flatMap((system) => {
    const mine = plan.filter((p) => p.on.includes(system));
    if (mine.length === 0) return [];
    // Threshold on each Redis asked for, one after the other; the peers on one redis-server.
    const on: RedisMode[] = system === 'threshold' ? redisModes : ['standalone'];
    return on.map((redis) => ({ system, redis, mine }));
  });
}

async function rooms(): Promise<Pick<Results, 'fanout' | 'manyRooms' | 'cluster'>> {
  const out: Pick<Results, 'fanout' | 'manyRooms'> = { fanout: {}, manyRooms: {} };
  const cluster: ClusterFigures = { masters: CLUSTER_MASTERS };
  for (const { system, redis, mine } of roomsPlan()) {
    const on = redis === 'cluster' ? `, Redis Cluster (${CLUSTER_MASTERS} masters)` : '';
    const all: RoomsRun[][] = [];
    for (let i = 1; i <= runs; i++) {
      step(
        `${mine.map((p) => p.w.name).join(', ')}: ${SYSTEM_LABELS[system]}${on}, run ${i}/${runs}`,
      );
      all.push(
        await runRooms(
          system,
          mine.map((p) => p.w),
          log,
          redis,
        ),
      );
    }
    mine.forEach((p, j) => {
      const summary = summarise(all.map((r) => r[j] as RoomsRun));
      if (redis === 'cluster') cluster[p.key] = summary;
      else out[p.key][system] = summary;
    });
  }
  return { ...out, cluster: redisModes.includes('cluster') ? cluster : undefined };
}

/** The idle node on each Redis asked for: `runs` runs each, the median by node CPU. */
async function idleNode(): Promise<Partial<Record<RedisMode, IdleRun>>> {
  const out: Partial<Record<RedisMode, IdleRun>> = {};
  for (const redis of redisModes) {
    const all: IdleRun[] = [];
    for (let i = 1; i <= runs; i++) {
      step(`Idle node: Threshold on ${redis} Redis, run ${i}/${runs} (${idle.measureMs / 1000} s)`);
      const r = await runIdle(redis, idle);
      log(renderIdleCommands(r));
      all.push(r);
    }
    out[redis] = medianItem(all, (r) => r.nodeCpuPercent);
  }
  return out;
}

async function repeat<T>(name: string, key: (t: T) => number, f: () => Promise<T>) {
  const all: T[] = [];
  for (let i = 1; i <= runs; i++) {
    step(`${name}, run ${i}/${runs}`);
    const r = await f();
    log(`  ${JSON.stringify(r, (k, v) => (k === 'processes' ? undefined : v))}`);
    all.push(r);
  }
  return medianItem(all, key);
}

/** Steps of the whole run: one per run of a workload on a system (expansion runs once). */
function plannedSteps(): number {
  const { idle, expansion, ...repeated } = runsOf;
  const counted = Object.values(repeated).filter(Boolean).length;
  return (
    runs * (roomsPlan().length + counted + (idle ? redisModes.length : 0)) + (expansion ? 1 : 0)
  );
}

async function bench(): Promise<Results> {
  const started = Date.now();
  progress = new Progress({ total: plannedSteps() });
  const facts = machine();
  log(`Machine: ${facts.cpuModel}, ${facts.cores} cores, Node ${facts.node}, Redis ${facts.redis}`);
  log(`Pinning: ${facts.pinning}`);
  const figures = {
    ...(await rooms()),
    ingress: runsOf.ingress
      ? await repeat(
          'Ingress (HTTP): Threshold',
          (r) => r.perSecond,
          () => runIngress('threshold', ingress, log),
        )
      : undefined,
    ingressMinimal: runsOf.ingressMinimal
      ? await repeat(
          'Ingress (HTTP): minimal server',
          (r) => r.perSecond,
          () => runIngress('minimal', ingress, log),
        )
      : undefined,
    connections: {
      ...(runsOf.connections
        ? {
            threshold: await repeat(
              'Connections: Threshold',
              (r) => r.kibPerConnection,
              () => runConnections('threshold', connections),
            ),
          }
        : {}),
      ...(runsOf.connectionsSocketio
        ? {
            'socketio-streams': await repeat(
              'Connections: Socket.IO',
              (r) => r.kibPerConnection,
              () => runConnections('socketio-streams', connections),
            ),
          }
        : {}),
    },
    sms: runsOf.sms
      ? await repeat(
          'SMS outbox',
          (r) => r.jobsPerSecond,
          () => runSms(sms),
        )
      : undefined,
    idle: runsOf.idle ? await idleNode() : undefined,
    conversations: runsOf.conversations
      ? await repeat(
          'Conversations: Threshold',
          (r) => r.list.p50,
          () => runConversations(conversations, log),
        )
      : undefined,
    expansion: runsOf.expansion
      ? (step('Expansion: all - muted, streaming vs naive, then dispatched'),
        await runExpansion(expansion, log, redisModes[0]))
      : undefined,
  };
  return {
    date: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    partial: partial ? process.argv.slice(2).join(' ') : undefined,
    runs,
    seconds: Math.round((Date.now() - started) / 1000),
    machine: {
      ...facts,
      // What the pinning really was: a taskset that failed leaves a process unpinned.
      pinning:
        pinningFailures().length === 0
          ? facts.pinning
          : `${facts.pinning}; ${pinningFailures().length} taskset calls failed (${pinningFailures()[0]})`,
    },
    redis: REDIS_SETTINGS,
    config: {
      fanout,
      manyRooms,
      ingress,
      connections,
      sms,
      idle,
      conversations,
      expansion,
      redis: redisModes,
    },
    ...figures,
    goals: goals(figures),
  };
}

/** The README's Performance table, rewritten from a results file. */
async function writeReadme(r: Results): Promise<void> {
  const readme = await readFile(README, 'utf8');
  const from = readme.indexOf(START);
  const to = readme.indexOf(END);
  if (from < 0 || to < from) throw new Error(`README.md has no ${START} … ${END} section`);
  const section = [
    START,
    renderTable(r),
    '',
    renderMachine(r),
    '',
    'Goals (ratios from the same run):',
    '',
    renderGoals(r.goals),
    END,
  ].join('\n');
  await writeFile(README, readme.slice(0, from) + section + readme.slice(to + END.length));
}

if (args.readme) {
  const results = JSON.parse(await readFile(RESULTS, 'utf8')) as Results;
  if (results.partial)
    throw new Error(`${RESULTS} is from a partial run (${results.partial}): run the whole bench`);
  await writeReadme(results);
  log('README.md: Performance table rewritten from bench/results/latest.json');
} else {
  const results = await bench();
  progress.done();
  await mkdir(fileURLToPath(new URL('results/', import.meta.url)), { recursive: true });
  const file = partial ? PARTIAL : RESULTS;
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`);
  const r = results;
  // The peers' table, unless the run measured none of its figures (`--only idle`).
  const main = [r.fanout, r.manyRooms, r.connections].some((x) => Object.keys(x).length > 0);
  if (main || r.ingress || r.sms) {
    log('');
    log(renderTable(results));
    log('');
    log(renderMachine(results));
  }
  const cluster = renderCluster(results);
  if (cluster) {
    log('');
    log(cluster);
    log('');
    log(renderClusterMachine(results));
  }
  const convs = renderConversations(results);
  if (convs) {
    log('');
    log(convs);
    log('');
    log(renderMachine(results));
  }
  if (results.expansion) {
    log('');
    log(renderExpansion(results.expansion));
  }
  if (results.goals.length > 0) {
    log('');
    log(renderGoals(results.goals));
  }
  log(`\nWrote ${file} in ${results.seconds} s`);
}
process.exit(0);
