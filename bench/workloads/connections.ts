/**
 * Connections: idle WebSocket connections on one server; RSS per connection (the server's
 * RSS after the connections minus before, each after a settle, over the count) and the rate
 * at which they were accepted.
 */
import type { ClientSystem } from '../clients/subscribers.ts';
import { setTimeout as settle } from 'node:timers/promises';
import { forkBench } from '../lib/processes.ts';
import { round, sample } from '../lib/proc-stats.ts';
import { clientToken, ThresholdCluster } from '../systems/threshold.ts';
import { startSocketIoServers } from '../systems/targets.ts';

export interface ConnectionsWorkload {
  count: number;
  settleMs: number;
}

export interface ConnectionsRun {
  connections: number;
  connectPerSecond: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  kibPerConnection: number;
  /**
   * The server's CPU (user + system, `/proc`) while the connections opened, per connection, µs
   * (absent from results written before it was measured).
   */
  serverCpuUsPerConnect?: number;
}

/**
 * Connections opened before "before" is read: the server's first connections grow buffers
 * and pools once, a cost the per-connection figure must not carry.
 */
const WARM_UP = 500;

export async function runConnections(
  system: 'threshold' | 'socketio-streams',
  w: ConnectionsWorkload,
): Promise<ConnectionsRun> {
  // The client process starts (tsx, a second or so) while the server does.
  const client = forkBench(`${system} idle clients`, 'clients/subscribers.ts', 'client');
  let server: { pid: number; url: string; stop(): Promise<void> };
  let clientSystem: ClientSystem;
  if (system === 'threshold') {
    const cluster = await ThresholdCluster.start(1);
    const node = cluster.nodes[0];
    if (!node) throw new Error('no node');
    // A member's JWT, as a real client presents it: the upgrade verifies it.
    const token = await clientToken('user:idle');
    server = {
      pid: node.process.pid,
      url: `${node.url.replace('http', 'ws')}/v1/ws?token=${token}`,
      stop: () => cluster.stop(),
    };
    clientSystem = 'threshold';
  } else {
    const io = await startSocketIoServers(1, 'streams');
    server = { pid: io.processes[0]?.pid ?? 0, url: io.urls[0] ?? '', stop: io.stop };
    clientSystem = 'socketio';
  }
  try {
    await client.call('connectIdle', { system: clientSystem, url: server.url, count: WARM_UP });
    await settle(w.settleMs);
    const start = sample(server.pid);
    const before = start?.rssBytes ?? 0;
    const cpuBefore = start?.cpuSeconds ?? 0;
    const r = await client.call<{ connections: number; perSecond: number }>('connectIdle', {
      system: clientSystem,
      url: server.url,
      count: w.count,
    });
    const cpu = (sample(server.pid)?.cpuSeconds ?? 0) - cpuBefore;
    await settle(w.settleMs);
    const after = sample(server.pid)?.rssBytes ?? 0;
    return {
      connections: r.connections,
      connectPerSecond: round(r.perSecond),
      rssBeforeMiB: round(before / 2 ** 20, 1),
      rssAfterMiB: round(after / 2 ** 20, 1),
      kibPerConnection: round((after - before) / 1024 / w.count, 1),
      serverCpuUsPerConnect: round((cpu * 1e6) / w.count),
    };
  } finally {
    await client.stop();
    await server.stop();
  }
}
