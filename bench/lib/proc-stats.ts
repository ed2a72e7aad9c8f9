/** CPU time and memory of a process, read from /proc (Linux). */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (CLK_TCK; 100 on mainstream Linux). */
const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export interface ProcSample {
  /** User + system CPU seconds so far. */
  cpuSeconds: number;
  /** Resident set size now, bytes. */
  rssBytes: number;
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
    };
  } catch {
    return undefined;
  }
}

/**
 * Resets a process's VmHWM to its RSS now (Linux 4.0+; our own children only), so a later
 * `peakRssBytes` is the peak since then and catches what sampling every few ms misses.
 * False where the kernel refuses it.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** A process's peak RSS (VmHWM), bytes: since it started, or since `resetPeakRss`. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
    return kib === undefined ? undefined : Number(kib) * 1024;
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
  /** Highest RSS (VmRSS) sampled during the window, MiB (not VmHWM: that is since start). */
  rssMiB: number;
}

/**
 * Takes a sample of each process now; `sample()` during the window tracks its RSS, and
 * `finish()` turns a last sample into usage.
 */
export function measure(procs: { name: string; pid: number }[]): {
  sample(): void;
  finish(): ProcUsage[];
} {
  const start = Date.now();
  const before = procs.map((p) => sample(p.pid));
  const rss = before.map((b) => b?.rssBytes ?? 0);
  const track = (i: number, b: ProcSample | undefined) => {
    rss[i] = Math.max(rss[i] ?? 0, b?.rssBytes ?? 0);
  };
  return {
    sample() {
      procs.forEach((p, i) => track(i, sample(p.pid)));
    },
    finish() {
      const seconds = (Date.now() - start) / 1000;
      return procs.map((p, i) => {
        const a = before[i];
        const b = sample(p.pid);
        track(i, b);
        return {
          name: p.name,
          pid: p.pid,
          cpu: a && b ? round((b.cpuSeconds - a.cpuSeconds) / seconds, 2) : 0,
          rssMiB: round((rss[i] ?? 0) / 2 ** 20, 1),
        };
      });
    },
  };
}

export const round = (x: number, digits = 0) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};
