/**
 * The processes a benchmark starts: servers pinned to one core, load generators to the other
 * (when the machine has two or more and `taskset` exists), and bench scripts forked with an
 * RPC channel over IPC. Everything started here is killed when the run ends.
 */
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

export type Role = 'server' | 'client';

const hasTaskset = spawnSync('taskset', ['--version']).status === 0;
const cores = availableParallelism();

/** The CPU list each role is pinned to, or undefined when pinning is not possible. */
export function cpusOf(role: Role): string | undefined {
  if (!hasTaskset || cores < 2) return undefined;
  if (cores === 2) return role === 'server' ? '0' : '1';
  const half = Math.floor(cores / 2);
  return role === 'server' ? `0-${half - 1}` : `${half}-${cores - 1}`;
}

/** How many cores `role` has: its pinned CPUs, or the whole machine when not pinned. */
export function coreCount(role: Role): number {
  const list = cpusOf(role);
  if (!list) return cores;
  return list
    .split(',')
    .map((range) => range.split('-').map(Number))
    .reduce((n, [a = 0, b = a]) => n + b - a + 1, 0);
}

/** Pins every thread of a running process (threads it starts later inherit it). */
export function pin(pid: number | undefined, role: Role): void {
  const cpus = cpusOf(role);
  if (!cpus || !pid) return;
  spawnSync('taskset', ['-a', '-cp', cpus, String(pid)], { stdio: 'ignore' });
}

/**
 * Lets a running process use every core again, for setup that is not measured (opening
 * thousands of connections); {@link pin} puts it back before measuring.
 */
export function unpin(pid: number | undefined): void {
  if (!cpusOf('server') || !pid) return;
  spawnSync('taskset', ['-a', '-cp', `0-${cores - 1}`, String(pid)], { stdio: 'ignore' });
}

const started = new Set<ChildProcess>();
/** Processes started elsewhere (detached redis-servers) that must not outlive the bench. */
const others = new Set<number>();
process.once('exit', () => {
  for (const child of started) child.kill('SIGKILL');
  for (const pid of others) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

/** Kills `pid` when the bench exits, however it exits; `forget` once it stopped normally. */
export function killAtExit(pid: number): { forget(): void } {
  others.add(pid);
  return { forget: () => others.delete(pid) };
}

function track(child: ChildProcess): ChildProcess {
  started.add(child);
  child.once('exit', () => started.delete(child));
  return child;
}

export interface Spawned {
  name: string;
  child: ChildProcess;
  pid: number;
  /** What it printed, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

/** Runs a command (a Threshold node, a server) pinned to `role`'s cores. */
export function spawnPinned(
  name: string,
  command: string,
  args: string[],
  role: Role,
  env: NodeJS.ProcessEnv = {},
): Spawned {
  const child = track(
    spawn(command, args, {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  pin(child.pid, role);
  let out = '';
  for (const s of [child.stdout, child.stderr]) {
    s?.setEncoding('utf8');
    s?.on('data', (chunk: string) => {
      // Keep the tail only: a node logs for the whole run.
      out = (out + chunk).slice(-20_000);
    });
  }
  return { name, child, pid: child.pid ?? 0, output: () => out, stop: () => stop(child) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  // A Threshold node may take its shutdown timeout (8 s by default) to drain.
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

interface Request {
  id: number;
  method: string;
  params: unknown;
}
type Reply = { id: number; result: unknown } | { id: number; error: string };

/** A bench script (bench/<path>.ts) run with tsx in a process of its own, answering calls. */
export class BenchChild {
  readonly pid: number;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve(v: unknown): void; reject(e: Error): void }
  >();
  private output = '';

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.pid = child.pid ?? 0;
    child.on('message', (m: Reply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if ('error' in m) p.reject(new Error(`${name}: ${m.error}`));
      else p.resolve(m.result);
    });
    for (const s of [child.stdout, child.stderr]) {
      s?.setEncoding('utf8');
      s?.on('data', (chunk: string) => {
        this.output = (this.output + chunk).slice(-10_000);
      });
    }
    child.once('exit', (code, signal) => {
      const err = new Error(`${name} exited (${signal ?? code}):\n${this.output}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  call<T>(method: string, params: unknown = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, method, params } satisfies Request);
    });
  }

  stop(): Promise<void> {
    return stop(this.child);
  }
}

/** Forks `bench/<script>` under tsx, pinned to `role`'s cores. */
export function forkBench(
  name: string,
  script: string,
  role: Role,
  env: NodeJS.ProcessEnv = {},
): BenchChild {
  const path = fileURLToPath(new URL(`../${script}`, import.meta.url));
  const child = track(
    fork(path, [], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    }),
  );
  pin(child.pid, role);
  return new BenchChild(name, child);
}

/**
 * The child side: answers the parent's calls with `handlers`. A handler's result must be
 * plain data (it crosses IPC as JSON).
 */
export function serve(handlers: Record<string, (params: never) => unknown>): void {
  process.on('message', async (m: Request) => {
    const handler = handlers[m.method] as ((p: unknown) => unknown) | undefined;
    try {
      if (!handler) throw new Error(`no method ${m.method}`);
      const result = await handler(m.params);
      process.send?.({ id: m.id, result: result ?? null } satisfies Reply);
    } catch (err) {
      process.send?.({ id: m.id, error: (err as Error).stack ?? String(err) } satisfies Reply);
    }
  });
  // The parent going away ends the child.
  process.on('disconnect', () => process.exit(0));
}
