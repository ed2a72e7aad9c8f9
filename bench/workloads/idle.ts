/**
 * Idle: one relay node with no clients and no traffic, on one redis-server or on a Redis
 * Cluster. Its CPU (share of one core, from /proc) over the window, and what Redis served
 * meanwhile: commands per second from INFO stats' total_commands_processed summed over the
 * servers, and INFO commandstats per server, to say which commands an idle node costs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { machineLoad } from '../lib/machine.ts';
import { round, sample } from '../lib/proc-stats.ts';
import type { RedisMode } from '../systems/redis.ts';
import { ThresholdCluster } from '../systems/threshold.ts';

export interface IdleWorkload {
  /** After the node holds every partition, before measuring: start-up work is not idling. */
  settleMs: number;
  measureMs: number;
}

export interface IdleCommand {
  /** As INFO commandstats names it (`evalsha`, `cluster|slots`). */
  command: string;
  perSecond: number;
  /** Redis CPU time it took, µs per second (commandstats' usec). */
  usecPerSecond: number;
}

export interface IdleServer {
  name: string;
  commandsPerSecond: number;
  /** Its commands, busiest first. */
  commands: IdleCommand[];
}

export interface IdleRun {
  redis: RedisMode;
  seconds: number;
  /** The node's CPU over the window, % of one core. */
  nodeCpuPercent: number;
  /** Every redis-server's CPU over the window, summed, % of one core. */
  redisCpuPercent: number;
  /** Commands Redis processed per second, summed over its servers (masters). */
  commandsPerSecond: number;
  /** Commands per second summed over the servers, busiest first. */
  commands: IdleCommand[];
  servers: IdleServer[];
  /** Cores busy machine-wide beyond the node and Redis (noise check). */
  outsideCores: number;
}

interface Reading {
  total: number;
  commands: Map<string, { calls: number; usec: number }>;
}

async function read(client: Redis): Promise<Reading> {
  const info = String(await client.call('INFO', 'stats', 'commandstats'));
  const total = Number(/^total_commands_processed:(\d+)/m.exec(info)?.[1] ?? Number.NaN);
  const commands = new Map<string, { calls: number; usec: number }>();
  for (const m of info.matchAll(/^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/gm))
    commands.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  return { total, commands };
}

/**
 * What a server processed between two readings, per second. Each reading's own INFO is
 * counted by the next one (a command is counted once it ran): one INFO is ours, not the node's.
 */
function between(a: Reading, b: Reading, seconds: number) {
  const commands: IdleCommand[] = [];
  for (const [command, after] of b.commands) {
    const before = a.commands.get(command) ?? { calls: 0, usec: 0 };
    const calls = after.calls - before.calls - (command === 'info' ? 1 : 0);
    if (calls <= 0) continue;
    commands.push({
      command,
      perSecond: round(calls / seconds, 2),
      usecPerSecond: round((after.usec - before.usec) / seconds, 1),
    });
  }
  return {
    commandsPerSecond: round((b.total - a.total - 1) / seconds, 2),
    commands: commands.sort((x, y) => y.perSecond - x.perSecond),
  };
}

export async function runIdle(mode: RedisMode, w: IdleWorkload): Promise<IdleRun> {
  const mesh = await ThresholdCluster.start(1, {}, mode);
  // Direct connections to each server (not a cluster client: INFO is per server).
  const clients = mesh.redis.urls.map((url) => new Redis(url, { lazyConnect: true }));
  try {
    await Promise.all(clients.map((c) => c.connect()));
    await sleep(w.settleMs);
    const node = mesh.nodes[0]?.process.pid ?? 0;
    const servers = mesh.redis.servers;
    const start = performance.now();
    const before = await Promise.all(clients.map(read));
    const cpuBefore = [node, ...servers.map((s) => s.pid)].map(sample);
    const load = machineLoad();
    await sleep(w.measureMs);
    const cpuAfter = [node, ...servers.map((s) => s.pid)].map(sample);
    const machineBusy = load();
    const after = await Promise.all(clients.map(read));
    const seconds = (performance.now() - start) / 1000;
    const cpu = cpuBefore.map((b, i) => {
      const a = cpuAfter[i];
      if (!a || !b) throw new Error('a process of the idle node or its Redis exited');
      return (a.cpuSeconds - b.cpuSeconds) / seconds;
    });
    const [nodeCpu = 0, ...redisCpu] = cpu;
    const perServer = servers.map((s, i) => ({
      name: s.name,
      ...between(before[i] as Reading, after[i] as Reading, seconds),
    }));
    const summed = new Map<string, IdleCommand>();
    for (const c of perServer.flatMap((s) => s.commands)) {
      const t = summed.get(c.command) ?? { command: c.command, perSecond: 0, usecPerSecond: 0 };
      t.perSecond = round(t.perSecond + c.perSecond, 2);
      t.usecPerSecond = round(t.usecPerSecond + c.usecPerSecond, 1);
      summed.set(c.command, t);
    }
    const redisTotal = redisCpu.reduce((a, b) => a + b, 0);
    return {
      redis: mode,
      seconds: round(seconds, 1),
      nodeCpuPercent: round(nodeCpu * 100, 2),
      redisCpuPercent: round(redisTotal * 100, 2),
      commandsPerSecond: round(
        perServer.reduce((a, s) => a + s.commandsPerSecond, 0),
        2,
      ),
      commands: [...summed.values()].sort((x, y) => y.perSecond - x.perSecond),
      servers: perServer,
      outsideCores: round(machineBusy - nodeCpu - redisTotal, 2),
    };
  } finally {
    for (const c of clients) c.disconnect();
    await mesh.stop();
  }
}
