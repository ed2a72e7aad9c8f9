/**
 * Conversations (Threshold only: the peers have no such API). Set up over the admin API:
 * `rooms` rooms each holding `user:heavy` and a few others, one room of `bigRoom` members and
 * one of 2. The heavy member's list alone (nothing else running), then, while HTTP publishes flow into the heavy member's rooms at a steady rate,
 * the heavy member and a few others list their rooms (`GET /v1/me/rooms?limit=20`, then the
 * next page with `after`), open the newest (`GET …/messages?before=`) and mark it read
 * (`PUT …/read`): the latency of each. Last, the commit cost: `?wait=1` publishes into the big
 * room and into the 2-member room, in alternating rounds, and their commits/s, latency and
 * server CPU per commit side by side (committing writes nothing per member, so ≈ 1.0×).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type {
  CommitParams,
  CommitResult,
  FlowHistograms,
  FlowParams,
  FlowResult,
  Reader,
} from '../clients/conversations.ts';
import { merge, type Percentiles, percentiles } from '../lib/histogram.ts';
import { machineLoad } from '../lib/machine.ts';
import { forkBench, pin, unpin } from '../lib/processes.ts';
import { measure, type ProcUsage, round, sample } from '../lib/proc-stats.ts';
import { now } from '../lib/stamp.ts';
import { ADMIN_TOKEN, clientToken, ThresholdCluster } from '../systems/threshold.ts';

export interface ConversationsWorkload {
  /** Rooms `user:heavy` is a member of. */
  rooms: number;
  /** Other members in each of those rooms, drawn in turn from a pool of `othersPool`. */
  othersPerRoom: number;
  othersPool: number;
  /** Of those others, how many read beside the heavy member (each in rooms × per / pool). */
  otherReaders: number;
  heavyCycleMs: number;
  otherCycleMs: number;
  pageSize: number;
  /** The heavy member's first page requested this many times in a row, nothing else running. */
  aloneLists: number;
  /** Messages per second flowing into the heavy member's rooms (HTTP, 202). */
  rate: number;
  warmupMs: number;
  measureMs: number;
  /** Members of the big room (the small one has 2). */
  bigRoom: number;
  /** `?wait=1` publishes into each of the two rooms, split over `commitRounds` alternating rounds. */
  commits: number;
  commitRounds: number;
  commitConcurrency: number;
}

export interface CommitCost {
  members: number;
  committed: number;
  failed: number;
  seconds: number;
  perSecond: number;
  latency: Percentiles;
  /** CPU of the node and of redis-server per commit, µs. */
  nodeCpuUs: number;
  redisCpuUs: number;
}

export interface ConversationsRun {
  rooms: number;
  /** Rooms each other reader is in. */
  otherRooms: number;
  setup: { requests: number; seconds: number };
  /** The heavy member's first page with nothing else running: latency, server CPU per call. */
  alone: { latency: Percentiles; nodeCpuMs: number; redisCpuMs: number };
  flow: {
    rate: number;
    sent: number;
    accepted: number;
    failed: number;
    /** Messages the node committed (relayed) from the first send until the drain. */
    committed: number;
    maxLagMs: number;
  };
  /** The heavy member (member of `rooms` rooms): first page, next page. */
  list: Percentiles;
  listAfter: Percentiles;
  /** The other readers' pages (first and next). */
  listOthers: Percentiles;
  latest: Percentiles;
  read: Percentiles;
  heavyCycles: number;
  errors: number;
  firstError?: string | undefined;
  processes: ProcUsage[];
  /** Cores busy machine-wide beyond our processes during the window (noise check). */
  outsideCores: number;
  commits: { big: CommitCost; small: CommitCost; ratio: number };
}

const HEAVY = 'user:heavy';
const BIG = 'conv-big';
const SMALL = 'conv-small';

/** Messages the node has committed, from its metrics (read outside the measured window). */
async function relayed(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const m of text.matchAll(/^threshold_messages_relayed_total(?:\{[^}]*\})? (\S+)$/gm))
    total += Number(m[1]);
  return total;
}

export async function runConversations(
  w: ConversationsWorkload,
  log: (line: string) => void,
): Promise<ConversationsRun> {
  const client = forkBench('conversations client', 'clients/conversations.ts', 'client');
  const cluster = await ThresholdCluster.start(1);
  const node = cluster.nodes[0];
  if (!node) throw new Error('no node');
  const servers = cluster.processes;
  try {
    // Setting up is not measured: the node and Redis may use every core meanwhile.
    for (const p of servers) unpin(p.pid);
    const setupStart = now();
    const rooms = Array.from({ length: w.rooms }, (_, i) => `conv-${i}`);
    const other = (j: number) => `user:o${j % w.othersPool}`;
    await cluster.createRooms([...rooms, BIG, SMALL]);
    const put = (room: string, member: string) => ({
      method: 'PUT',
      path: `/v1/rooms/${room}/members/${member}`,
    });
    const members = [
      ...rooms.flatMap((room, i) => [
        put(room, HEAVY),
        ...Array.from({ length: w.othersPerRoom }, (_, k) => put(room, other(i + k))),
      ]),
      ...Array.from({ length: w.bigRoom }, (_, i) => put(BIG, `user:b${i}`)),
      put(SMALL, 'user:s0'),
      put(SMALL, 'user:s1'),
    ];
    await cluster.adminAll(members);
    // One message in each room first: every room in a list has a last message to show.
    const seeds = rooms.map((room) => ({
      method: 'POST',
      path: `/v1/rooms/${room}/messages`,
      body: { body: 'bench: first message' },
    }));
    await cluster.adminAll(seeds);
    const requests = w.rooms + 2 + members.length + seeds.length;
    const setupSeconds = round((now() - setupStart) / 1000, 1);
    log(
      `  set up ${w.rooms} rooms of ${HEAVY}, a room of ${w.bigRoom} and one of 2: ${requests} admin requests in ${setupSeconds} s`,
    );
    for (const p of servers) pin(p.pid, 'server');
    // The seeds committed (and the node quiet) before anything is measured.
    const seeded = Date.now() + 10_000;
    while ((await relayed(node.url)) < w.rooms && Date.now() < seeded) await sleep(100);

    // The heavy member's list alone (nothing else running): its latency and server CPU per call.
    const heavyToken = await clientToken(HEAVY);
    const listParams = { url: node.url, token: heavyToken, pageSize: w.pageSize };
    await client.call('lists', { ...listParams, count: 3 });
    const aloneBefore = servers.map((s) => sample(s.pid));
    const aloneHistogram = await client.call<string>('lists', {
      ...listParams,
      count: w.aloneLists,
    });
    const aloneAfter = servers.map((s) => sample(s.pid));
    const aloneCpu = servers.map(
      (_, i) => (aloneAfter[i]?.cpuSeconds ?? 0) - (aloneBefore[i]?.cpuSeconds ?? 0),
    );
    const alone = {
      latency: percentiles(merge([aloneHistogram])),
      nodeCpuMs: round(((aloneCpu[0] ?? 0) / w.aloneLists) * 1000, 1),
      redisCpuMs: round((aloneCpu.slice(1).reduce((a, b) => a + b, 0) / w.aloneLists) * 1000, 1),
    };

    const readers: Reader[] = [
      { member: HEAVY, token: heavyToken, cycleMs: w.heavyCycleMs, heavy: true },
    ];
    for (let j = 0; j < w.otherReaders; j++)
      readers.push({
        member: other(j),
        token: await clientToken(other(j)),
        cycleMs: w.otherCycleMs,
        heavy: false,
      });

    const before = await relayed(node.url);
    const start = Math.ceil(now()) + 500;
    const from = start + w.warmupMs;
    const running = client.call<FlowResult>(
      'flow',
      {
        url: node.url,
        adminToken: ADMIN_TOKEN,
        rooms,
        rate: w.rate,
        readers,
        pageSize: w.pageSize,
        start,
        warmupMs: w.warmupMs,
        measureMs: w.measureMs,
      } satisfies FlowParams,
      w.warmupMs + w.measureMs + 60_000,
    );
    await sleep(Math.max(0, from - now()));
    const usage = measure([...servers, { name: client.name, pid: client.pid }]);
    const load = machineLoad();
    const benchCpu = process.cpuUsage();
    while (now() < from + w.measureMs - 100) {
      await sleep(100);
      usage.sample();
    }
    await sleep(Math.max(0, from + w.measureMs - now()));
    const processes = usage.finish();
    const busy = load();
    const { user, system } = process.cpuUsage(benchCpu);
    const flow = await running;
    // Drain: every accepted message committed, or 5 s.
    const drained = Date.now() + 5000;
    let after = await relayed(node.url);
    while (after - before < flow.accepted && Date.now() < drained) {
      await sleep(100);
      after = await relayed(node.url);
    }
    const ours = processes.reduce((a, p) => a + p.cpu, 0) + (user + system) / 1000 / w.measureMs;
    const h = (k: keyof FlowHistograms) => percentiles(merge([flow.histograms[k]]));

    // Commit cost: the big room and the small one in alternating rounds, after a warm-up in
    // each (the first commit after membership changes recounts the members once).
    const commit = (room: string, count: number) =>
      client.call<CommitResult>('commits', {
        url: node.url,
        adminToken: ADMIN_TOKEN,
        room,
        count,
        concurrency: w.commitConcurrency,
      } satisfies CommitParams);
    await commit(BIG, 50);
    await commit(SMALL, 50);
    const pids = servers.map((s) => s.pid);
    const acc = new Map<string, { results: CommitResult[]; node: number; redis: number }>();
    const per = Math.ceil(w.commits / w.commitRounds);
    for (let r = 0; r < w.commitRounds; r++)
      for (const room of [BIG, SMALL]) {
        const cpuBefore = pids.map(sample);
        const result = await commit(room, per);
        const cpuAfter = pids.map(sample);
        const cpu = pids.map(
          (_, i) => (cpuAfter[i]?.cpuSeconds ?? 0) - (cpuBefore[i]?.cpuSeconds ?? 0),
        );
        const a = acc.get(room) ?? { results: [], node: 0, redis: 0 };
        a.results.push(result);
        a.node += cpu[0] ?? 0;
        a.redis += cpu.slice(1).reduce((x, y) => x + y, 0);
        acc.set(room, a);
      }
    const cost = (room: string, members: number): CommitCost => {
      const a = acc.get(room) ?? { results: [], node: 0, redis: 0 };
      const committed = a.results.reduce((x, r) => x + r.committed, 0);
      const seconds = a.results.reduce((x, r) => x + r.seconds, 0);
      const perCommit = (s: number) => (committed > 0 ? round((s / committed) * 1e6) : 0);
      return {
        members,
        committed,
        failed: a.results.reduce((x, r) => x + r.failed, 0),
        seconds: round(seconds, 2),
        perSecond: seconds > 0 ? round(committed / seconds) : 0,
        latency: percentiles(merge(a.results.map((r) => r.histogram))),
        nodeCpuUs: perCommit(a.node),
        redisCpuUs: perCommit(a.redis),
      };
    };
    const big = cost(BIG, w.bigRoom);
    const small = cost(SMALL, 2);
    const run: ConversationsRun = {
      rooms: w.rooms,
      otherRooms: Math.round((w.rooms * w.othersPerRoom) / w.othersPool),
      setup: { requests, seconds: setupSeconds },
      alone,
      flow: {
        rate: w.rate,
        sent: flow.sent,
        accepted: flow.accepted,
        failed: flow.failed,
        committed: after - before,
        maxLagMs: flow.maxLagMs,
      },
      list: h('list'),
      listAfter: h('listAfter'),
      listOthers: h('listOthers'),
      latest: h('latest'),
      read: h('read'),
      heavyCycles: flow.heavyCycles,
      errors: flow.errors,
      firstError: flow.firstError,
      processes,
      outsideCores: round(busy - ours, 2),
      commits: {
        big,
        small,
        ratio: small.perSecond > 0 ? round(big.perSecond / small.perSecond, 2) : 0,
      },
    };
    const pct = (p: Percentiles) => `p50 ${p.p50} p99 ${p.p99} max ${p.max} ms (${p.count})`;
    log(
      `  flow ${w.rate} msg/s: ${flow.accepted}/${flow.sent} accepted, ${run.flow.committed} committed, publisher lag ${flow.maxLagMs} ms; ` +
        `outside load ${run.outsideCores} cores; cpu ${processes.map((p) => `${p.name} ${p.cpu}`).join(', ')}`,
    );
    log(
      `  ${HEAVY} (${w.rooms} rooms) GET /v1/me/rooms alone: ${pct(alone.latency)}, node ${alone.nodeCpuMs} ms + redis ${alone.redisCpuMs} ms CPU per call`,
    );
    log(
      `  ${HEAVY} (${w.rooms} rooms) GET /v1/me/rooms: ${pct(run.list)}; next page ${pct(run.listAfter)}`,
    );
    log(`  others (${run.otherRooms} rooms each) GET /v1/me/rooms: ${pct(run.listOthers)}`);
    log(`  GET messages?before=: ${pct(run.latest)}; PUT read: ${pct(run.read)}`);
    for (const c of [big, small])
      log(
        `  commits into a room of ${c.members}: ${c.perSecond}/s (${c.committed} in ${c.seconds} s, ${c.failed} not committed), ${pct(c.latency)}, node ${c.nodeCpuUs} µs + redis ${c.redisCpuUs} µs CPU per commit`,
      );
    if (flow.errors > 0) log(`  ${flow.errors} reader errors, first: ${flow.firstError}`);
    return run;
  } finally {
    await client.stop();
    await cluster.stop();
  }
}
