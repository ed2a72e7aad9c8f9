/**
 * The processes a benchmark starts: servers pinned to one core, load generators to the other
 * (when the machine has two or more and `taskset` exists), and bench scripts forked with an
 * RPC channel over IPC. Everything started here is killed when the run ends.
 */
import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

export type Role = 'server' | 'client';

const hasTaskset = spawnSync('taskset', ['--version']).status === 0;

/** The CPUs this process may run on (its affinity, e.g. a container's cpuset), in order. */
function allowedCpus(): number[] {
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  if (!list) return Array.from({ length: availableParallelism() }, (_, i) => i);
  return list.split(',').flatMap((range) => {
    const [a = 0, b = a] = range.split('-').map(Number);
    return Array.from({ length: b - a + 1 }, (_, i) => a + i);
  });
}

const allowed = allowedCpus();

/** The CPUs each role is pinned to: the first half of the allowed ones for servers. */
function cpuIdsOf(role: Role): number[] | undefined {
  if (!hasTaskset || allowed.length < 2) return undefined;
  const half = Math.floor(allowed.length / 2);
  return role === 'server' ? allowed.slice(0, half) : allowed.slice(half);
}

/** The CPU list each role is pinned to (taskset's form), or undefined when pinning is not possible. */
export function cpusOf(role: Role): string | undefined {
  return cpuIdsOf(role)?.join(',');
}

/** How many cores `role` has: its pinned CPUs, or every allowed one when not pinned. */
export function coreCount(role: Role): number {
  return cpuIdsOf(role)?.length ?? allowed.length;
}

/** taskset calls that failed (a process gone, a CPU refused): the pinning reported is not real. */
const pinFailures: string[] = [];
export const pinningFailures = (): readonly string[] => pinFailures;

function taskset(pid: number, cpus: string): void {
  const r = spawnSync('taskset', ['-a', '-cp', cpus, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = `taskset -a -cp ${cpus} ${pid}: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}`;
    pinFailures.push(why);
    console.error(`bench: pinning failed: ${why}`);
  }
}

/** Pins every thread of a running process (threads it starts later inherit it). */
export function pin(pid: number | undefined, role: Role): void {
  const cpus = cpusOf(role);
  if (!cpus || !pid) return;
  taskset(pid, cpus);
}

/**
 * Lets a running process use every core again, for setup that is not measured (opening
 * thousands of connections); {@link pin} puts it back before measuring.
 */
export function unpin(pid: number | undefined): void {
  if (!cpusOf('server') || !pid) return;
  taskset(pid, allowed.join(','));
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

/**
 * How long a call may take: the longest (subscribing 10,000 rooms, opening 10,000
 * connections) take seconds; a child that hangs must fail the run, not stall it.
 */
const CALL_TIMEOUT_MS = 180_000;

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

  /** Calls `method` in the child; rejects if it has not answered within `timeoutMs`. */
  call<T>(method: string, params: unknown = {}, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${this.name}: ${method} did not answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v as T)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
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
