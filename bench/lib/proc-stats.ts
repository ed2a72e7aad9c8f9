/** CPU time and memory of a process, read from /proc (Linux). */
import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times: 100 on every mainstream Linux. */
const TICKS = 100;

export interface ProcSample {
  /** User + system CPU seconds so far. */
  cpuSeconds: number;
  /** Resident set size now, bytes. */
  rssBytes: number;
  /** Peak resident set size (VmHWM), bytes. */
  peakRssBytes: number;
}

export function sample(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), which ends with the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (name: string) =>
      Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
    return {
      cpuSeconds: (utime + stime) / TICKS,
      rssBytes: kib('VmRSS') * 1024,
      peakRssBytes: kib('VmHWM') * 1024,
    };
  } catch {
    return undefined;
  }
}

/** What a process used over a measured window. */
export interface ProcUsage {
  name: string;
  pid: number;
  /** CPU used over the window as a share of one core (1 = a whole core). */
  cpu: number;
  /** Peak RSS so far (since the process started), MiB. */
  peakRssMiB: number;
}

/** Takes a sample of each process now; `finish()` turns a second sample into usage. */
export function measure(procs: { name: string; pid: number }[]): { finish(): ProcUsage[] } {
  const start = Date.now();
  const before = procs.map((p) => sample(p.pid));
  return {
    finish() {
      const seconds = (Date.now() - start) / 1000;
      return procs.map((p, i) => {
        const a = before[i];
        const b = sample(p.pid);
        return {
          name: p.name,
          pid: p.pid,
          cpu: a && b ? round((b.cpuSeconds - a.cpuSeconds) / seconds, 2) : 0,
          peakRssMiB: b ? round(b.peakRssBytes / 2 ** 20, 1) : 0,
        };
      });
    },
  };
}

export const round = (x: number, digits = 0) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
