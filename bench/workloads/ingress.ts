/** Ingress: HTTP publishes one Threshold node accepts (202s per second) and their latency. */
import type { HttpLoadParams } from '../clients/http-load.ts';
import { merge, percentiles, type Percentiles } from '../lib/histogram.ts';
import { forkBench } from '../lib/processes.ts';
import { measure, type ProcUsage, round } from '../lib/proc-stats.ts';
import { ADMIN_TOKEN, ThresholdCluster } from '../systems/threshold.ts';
import { roomIds } from './rooms.ts';

export interface IngressWorkload {
  concurrency: number;
  warmupMs: number;
  measureMs: number;
}

export interface IngressRun {
  accepted: number;
  failed: number;
  perSecond: number;
  latency: Percentiles;
  processes: ProcUsage[];
}

export async function runIngress(w: IngressWorkload): Promise<IngressRun> {
  const client = forkBench('http client', 'clients/http-load.ts', 'client');
  const cluster = await ThresholdCluster.start(1);
  try {
    const rooms = roomIds(20);
    await cluster.createRooms(rooms);
    const node = cluster.nodes[0];
    if (!node) throw new Error('no node');
    const usage = measure([...cluster.processes, { name: client.name, pid: client.pid }]);
    const r = await client.call<{
      accepted: number;
      failed: number;
      seconds: number;
      histogram: string;
    }>('run', { url: node.url, token: ADMIN_TOKEN, rooms, ...w } satisfies HttpLoadParams);
    return {
      accepted: r.accepted,
      failed: r.failed,
      perSecond: round(r.accepted / r.seconds),
      latency: percentiles(merge([r.histogram])),
      processes: usage.finish(),
    };
  } finally {
    await client.stop();
    await cluster.stop();
  }
}
