/**
 * Ingress: HTTP publishes one Threshold node accepts (202s per second) and their latency;
 * the same load against the minimal HTTP server (systems/minimal-http.ts), each on a fresh
 * redis-server of its own.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { HttpLoadParams } from '../clients/http-load.ts';
import { merge, percentiles, type Percentiles } from '../lib/histogram.ts';
import { machineLoad } from '../lib/machine.ts';
import { coreCount, forkBench } from '../lib/processes.ts';
import { measure, type ProcUsage, round } from '../lib/proc-stats.ts';
import { loadGeneratorBound } from '../lib/verdict.ts';
import type { MinimalHttpParams } from '../systems/minimal-http.ts';
import { startBenchRedis } from '../systems/redis.ts';
import { ADMIN_TOKEN, PARTITIONS, ThresholdCluster } from '../systems/threshold.ts';
import { roomIds } from './rooms.ts';

export interface IngressWorkload {
  concurrency: number;
  warmupMs: number;
  measureMs: number;
}

/** Threshold (one node), or the minimal HTTP server (Hono + ioredis, one XADD per request). */
export type IngressSystem = 'threshold' | 'minimal';

export const INGRESS_LABELS: Record<IngressSystem, string> = {
  threshold: 'Threshold',
  minimal: 'Minimal HTTP server (Hono + ioredis, one XADD)',
};

export interface IngressRun {
  /** Absent in results from before the minimal server (Threshold's). */
  system?: IngressSystem;
  accepted: number;
  failed: number;
  perSecond: number;
  latency: Percentiles;
  /** CPU (share of a core) and RSS of the servers and the HTTP client, over the measured window. */
  processes: ProcUsage[];
  /** The HTTP client used ≥ 90% of its cores: the figure may be the harness's, not the server's. */
  loadGeneratorBound?: boolean;
  /** Cores busy on the machine over the window beyond our processes (a neighbour's load). */
  outsideCores?: number;
}

interface Server {
  url: string;
  processes: { name: string; pid: number }[];
  /** Rooms to post to (created first where the system has rooms). */
  rooms: string[];
  stop(): Promise<void>;
}

async function startThreshold(): Promise<Server> {
  const cluster = await ThresholdCluster.start(1);
  const rooms = roomIds(20);
  await cluster.createRooms(rooms);
  const node = cluster.nodes[0];
  if (!node) throw new Error('no node');
  return { url: node.url, processes: cluster.processes, rooms, stop: () => cluster.stop() };
}

async function startMinimal(): Promise<Server> {
  const server = forkBench('minimal http server', 'systems/minimal-http.ts', 'server');
  const redis = await startBenchRedis();
  const { port } = await server.call<{ port: number }>('start', {
    redisUrl: redis.url,
    partitions: PARTITIONS,
  } satisfies MinimalHttpParams);
  return {
    url: `http://127.0.0.1:${port}`,
    processes: [{ name: server.name, pid: server.pid }, ...redis.servers],
    rooms: roomIds(20),
    async stop() {
      await server.stop();
      await redis.stop();
    },
  };
}

export async function runIngress(
  system: IngressSystem,
  w: IngressWorkload,
  log: (line: string) => void = () => undefined,
): Promise<IngressRun> {
  const client = forkBench('http client', 'clients/http-load.ts', 'client');
  const server = await (system === 'threshold' ? startThreshold() : startMinimal());
  try {
    const running = client.call<{
      accepted: number;
      failed: number;
      seconds: number;
      histogram: string;
    }>('run', {
      url: server.url,
      token: ADMIN_TOKEN,
      rooms: server.rooms,
      ...w,
    } satisfies HttpLoadParams);
    // CPU over the measured window only (after the warm-up, until the client's last reply).
    await sleep(w.warmupMs);
    const usage = measure([...server.processes, { name: client.name, pid: client.pid }]);
    const load = machineLoad();
    const benchCpu = process.cpuUsage();
    const r = await running;
    const processes = usage.finish();
    const busy = load();
    const { user, system: sys } = process.cpuUsage(benchCpu);
    const clientCpu = processes.find((p) => p.pid === client.pid)?.cpu ?? 0;
    const ours =
      processes.reduce((a, p) => a + p.cpu, 0) + (user + sys) / 1e6 / (w.measureMs / 1000);
    const run: IngressRun = {
      system,
      accepted: r.accepted,
      failed: r.failed,
      perSecond: round(r.accepted / r.seconds),
      latency: percentiles(merge([r.histogram])),
      processes,
      loadGeneratorBound: loadGeneratorBound(clientCpu, coreCount('client')),
      outsideCores: round(busy - ours, 2),
    };
    log(
      `  ${INGRESS_LABELS[system]}: ${run.perSecond} 202s/s, p50 ${run.latency.p50} p99 ${run.latency.p99} ms` +
        `, cpu ${processes.map((p) => `${p.name} ${p.cpu}`).join(', ')} (outside ${run.outsideCores})` +
        (run.loadGeneratorBound ? '  (load-generator bound)' : ''),
    );
    return run;
  } finally {
    await client.stop();
    await server.stop();
  }
}
