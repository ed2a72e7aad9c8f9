import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { cpusOf } from './processes.ts';

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  redis: string;
  commit: string;
  /** Which cores the servers and the load generators were pinned to. */
  pinning: string;
}

const run = (cmd: string, args: string[]) => {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
};

export function machine(): Machine {
  const server = cpusOf('server');
  const client = cpusOf('client');
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    redis: /v=(\S+)/.exec(run('redis-server', ['--version']))?.[1] ?? 'unknown',
    commit: run('git', ['rev-parse', '--short', 'HEAD']),
    pinning:
      server && client
        ? `servers (Threshold nodes, Socket.IO servers, raw-pipeline nodes, the minimal HTTP server, redis-server) on CPU ${server}; load generators (publisher, subscribers, HTTP client, Twilio stand-in) on CPU ${client} (taskset)`
        : 'not pinned (taskset missing or a single core)',
  };
}

/** Busy share of every core (0..cores) between two readings of /proc/stat. */
export function machineLoad(): () => number {
  const read = () => {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const t = line.split(/\s+/).slice(1).map(Number);
    const idle = (t[3] ?? 0) + (t[4] ?? 0);
    return { idle, total: t.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  return () => {
    const b = read();
    const total = b.total - a.total;
    return total > 0
      ? Math.round(((total - (b.idle - a.idle)) / total) * cpus().length * 100) / 100
      : 0;
  };
}
