import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { onTestFinished } from 'vitest';
import { freePort, portFree } from './ports.ts';

export const BIN = fileURLToPath(new URL('../../bin/threshold.js', import.meta.url));
/** The repository's root, where a terminal command runs. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface NodeProcess {
  child: ChildProcess;
  /** Everything the process printed (JSON log lines and any plain error). */
  output(): string;
  /** What it printed on stderr alone (progress lines, errors). */
  errors(): string;
  /** Resolves with the exit code (null if killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves once a log line matching `pattern` appears; rejects if the process exits first. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

/**
 * Runs `threshold <args>` as a real child process, stopped when the test finishes. With
 * `ownGroup` it leads a process group of its own, as a command in a terminal does, so a test
 * can send a signal to the whole group the way Ctrl-C does.
 */
export function runThreshold(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  { ownGroup = false } = {},
): NodeProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
  });
  const proc = watch(child);
  onTestFinished(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Without a Redis URL it runs a redis-server of its own, which a SIGKILL would leave
    // running: it is asked to stop first, as a user would.
    if (!env.THRESHOLD_REDIS_URL) {
      child.kill('SIGTERM');
      const stopped = await Promise.race([
        proc.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 5_000)),
      ]);
      if (stopped) return;
    }
    child.kill('SIGKILL');
    await proc.exited;
  });
  return proc;
}

/** True while a process with this pid runs (a zombie nobody reaped yet does not count). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** A command line running in a pseudo-terminal, as typed into a terminal. */
export interface TerminalProcess extends NodeProcess {
  /** Types Ctrl-C: the terminal sends SIGINT to its whole foreground process group. */
  ctrlC(): void;
}

/**
 * Runs `command` in a pseudo-terminal (util-linux `script`) from the repository's root, with
 * only PATH and HOME (and `env`) from here. Its output is the terminal's (CRLF line ends, npm's
 * progress codes). If the test leaves it running, it gets Ctrl-C four times (a forced exit,
 * which still stops a local redis-server), then SIGKILL.
 */
export function runInTerminal(command: string, env: NodeJS.ProcessEnv = {}): TerminalProcess {
  // `script -c` runs the line with /bin/sh, which, unlike an interactive shell, would die of
  // the SIGINT itself and report 130 whatever the command did; `exec` hands the terminal over.
  const child = spawn('script', ['-qfec', `exec ${command}`, '/dev/null'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const proc = watch(child);
  // The terminal may close its end between our check and the write (the command exiting as
  // it is told to): a Ctrl-C into a closed terminal is no error.
  child.stdin?.on('error', () => {});
  const ctrlC = () => {
    if (child.exitCode === null && child.signalCode === null && child.stdin?.writable)
      child.stdin.write('\x03');
  };
  onTestFinished(async () => {
    for (let i = 0; i < 4; i++) ctrlC();
    const gone = await Promise.race([
      proc.exited.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5_000)),
    ]);
    if (!gone) {
      child.kill('SIGKILL');
      await proc.exited;
    }
  });
  return { ...proc, ctrlC };
}

/**
 * Pids of the processes that run in `dir` or name it on their command line: a redis-server
 * (which rewrites its command line, but runs in its data directory) or a node left behind.
 */
export function processesUsing(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const cwd = readlinkSync(`/proc/${pid}/cwd`);
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if ((cwd === dir || cwd.startsWith(`${dir}/`) || cmdline.includes(dir)) && alive(pid)) {
        pids.push(pid);
      }
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return pids;
}

function watch(child: ChildProcess): NodeProcess {
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      out += chunk;
      if (stream === child.stderr) err += chunk;
      for (const l of listeners) l();
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    });
  });
  return {
    child,
    output: () => out,
    errors: () => err,
    exited,
    waitFor(pattern, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const done = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        const check = () => {
          const match = pattern.exec(out);
          if (match) return done(() => resolve(match[0]));
          if (child.exitCode !== null || child.signalCode !== null) {
            done(() => reject(new Error(`process exited before ${pattern}:\n${out}`)));
          }
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`timed out waiting for ${pattern}:\n${out}`))),
          timeoutMs,
        );
        listeners.add(check);
        check();
      });
    },
  };
}

/** The first of `count` consecutive free loopback ports (`threshold cluster` numbers its nodes from --port). */
export async function freePortRange(count: number): Promise<number> {
  for (;;) {
    const base = await freePort();
    const free = await Promise.all(
      Array.from({ length: count - 1 }, (_, i) => portFree(base + 1 + i)),
    );
    if (free.every(Boolean)) return base;
  }
}
