/**
 * A local `redis-server` child process, for a node started without a Redis URL (DESIGN §5)
 * and for tests that need to stop, kill or restart their own Redis.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { EmbeddedRedisStartError, RedisNotInstalledError } from '../errors.ts';

export { EmbeddedRedisStartError, RedisNotInstalledError };

export interface EmbeddedRedisOptions {
  /** Working directory for the append-only file; created if missing. */
  dir: string;
  /**
   * Loopback port to listen on. Pass the port of an earlier instance to restart on it.
   * @default 0 (pick a free port)
   */
  port?: number;
  /** @default true */
  appendOnly?: boolean;
  /** @default 'everysec' */
  appendFsync?: 'always' | 'everysec' | 'no';
  /** @default 'redis-server' (looked up on PATH) */
  binary?: string;
  /**
   * How long to wait for "Ready to accept connections". Replaying a large append-only
   * file happens before that line, so a node with a lot of history may need more.
   * @default 10_000
   */
  readyTimeoutMs?: number;
  /** More `redis-server` arguments (`--cluster-enabled yes` for a test cluster). @default [] */
  extraArgs?: string[];
}

export const DEFAULT_EMBEDDED_REDIS_OPTIONS: Required<Omit<EmbeddedRedisOptions, 'dir'>> = {
  port: 0,
  appendOnly: true,
  appendFsync: 'everysec',
  binary: 'redis-server',
  readyTimeoutMs: 10_000,
  extraArgs: [],
};

export interface EmbeddedRedis {
  readonly url: string;
  readonly port: number;
  readonly pid: number | undefined;
  /** SIGTERM (Redis flushes the append-only file), SIGKILL if still alive after 5 s. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, for fault tests. */
  kill(): Promise<void>;
}

const READY_LINE = 'Ready to accept connections';
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 30;
// A free port found by listening on port 0 can be taken by someone else before
// redis-server binds it; only then (and only for ports we picked) try another.
const PORT_ATTEMPTS = 3;

export async function startEmbeddedRedis(options: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const d = DEFAULT_EMBEDDED_REDIS_OPTIONS;
  // Field by field so that an explicit `undefined` (e.g. `port: undefined`) means the default.
  const opts: Required<EmbeddedRedisOptions> = {
    dir: options.dir,
    port: options.port ?? d.port,
    appendOnly: options.appendOnly ?? d.appendOnly,
    appendFsync: options.appendFsync ?? d.appendFsync,
    binary: options.binary ?? d.binary,
    readyTimeoutMs: options.readyTimeoutMs ?? d.readyTimeoutMs,
    extraArgs: options.extraArgs ?? d.extraArgs,
  };
  await mkdir(opts.dir, { recursive: true });
  await stopOrphan(opts.dir);
  if (opts.port !== 0) return launch(opts, opts.port);
  for (let attempt = 1; ; attempt++) {
    try {
      return await launch(opts, await freePort());
    } catch (err) {
      const portTaken =
        err instanceof EmbeddedRedisStartError && err.log.includes('Address already in use');
      if (!portTaken || attempt >= PORT_ATTEMPTS) throw err;
    }
  }
}

const PID_FILE = 'redis-server.pid';

/**
 * A node killed with SIGKILL cannot stop its redis-server, which then lives on, holding the
 * data directory's append-only file. The next start on that directory stops it first (it
 * flushes on SIGTERM), found through the pid file it wrote there. That a live node's Redis is
 * never taken for an orphan is the caller's to ensure (the CLI locks the data directory:
 * data-dir-lock.ts).
 */
async function stopOrphan(dir: string): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(join(dir, PID_FILE), 'utf8')).trim());
  } catch {
    return;
  }
  const isRedis = async () =>
    (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).includes('redis-server');
  if (!pid || !(await isRedis())) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS;
  while (await isRedis()) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL');
      break;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Asks the kernel for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error('no port assigned'))));
    });
  });
}

async function launch(opts: Required<EmbeddedRedisOptions>, port: number): Promise<EmbeddedRedis> {
  // prettier-ignore
  const args = [
    '--bind', '127.0.0.1',
    '--port', String(port),
    '--dir', opts.dir,
    '--appendonly', opts.appendOnly ? 'yes' : 'no',
    '--appendfsync', opts.appendFsync,
    // Durability comes from the append-only file; RDB snapshots would only add fork pauses.
    '--save', '',
    '--daemonize', 'no',
    '--pidfile', join(opts.dir, PID_FILE),
    ...opts.extraArgs,
  ];
  // Its own session (detached: setsid): Ctrl-C in a terminal, which signals the whole foreground
  // process group, must reach the node, which stops Redis last (after releasing its leases), not
  // Redis at the same moment. Every exit of this process still stops it (see `track`).
  const child = spawn(opts.binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  // A failed spawn emits 'error' and never 'exit'.
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => child.pid === undefined && resolve());
  });
  track(child, exited);

  const tail: string[] = [];
  let onReadyLine = (): void => {};
  // Keep draining the pipes for the child's whole life: a full pipe would block Redis.
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
      if (!line.trim()) return;
      tail.push(line);
      if (tail.length > LOG_TAIL_LINES) tail.shift();
      if (line.includes(READY_LINE)) onReadyLine();
    });
  }

  try {
    await new Promise<void>((resolve, reject) => {
      const fail = (err: unknown): void => {
        cleanup();
        reject(err);
      };
      const onError = (err: Error): void => fail(err);
      // 'close' rather than 'exit': it comes after the pipes are drained, so the tail
      // holds Redis's last words ("Address already in use", a bad AOF...).
      const onClose = (code: number | null, signal: NodeJS.Signals | null): void =>
        fail(new Error(`exited before it was ready (${signal ?? `exit code ${code}`})`));
      const timer = setTimeout(
        () => fail(new Error(`not ready within ${opts.readyTimeoutMs} ms`)),
        opts.readyTimeoutMs,
      );
      const cleanup = (): void => {
        clearTimeout(timer);
        child.off('error', onError);
        child.off('close', onClose);
        onReadyLine = () => {};
      };
      onReadyLine = () => {
        cleanup();
        resolve();
      };
      child.once('error', onError);
      child.once('close', onClose);
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    if (isErrnoException(err) && err.code === 'ENOENT') {
      throw new RedisNotInstalledError(opts.binary, err);
    }
    throw new EmbeddedRedisStartError(
      `could not start "${opts.binary}" on port ${port}: ${(err as Error).message}`,
      tail.join('\n'),
      err,
    );
  }

  const terminate = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(timer);
  };

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: child.pid,
    stop: () => terminate('SIGTERM'),
    kill: () => terminate('SIGKILL'),
  };
}

// If this process exits without stop(), don't leave orphaned servers holding their
// ports and data dirs. SIGTERM (not SIGKILL) lets Redis flush its append-only file.
const running = new Set<ChildProcess>();
const terminateRunning = (): void => {
  for (const child of running) child.kill('SIGTERM');
};

function track(child: ChildProcess, exited: Promise<void>): void {
  if (running.size === 0) process.once('exit', terminateRunning);
  running.add(child);
  void exited.then(() => {
    running.delete(child);
    if (running.size === 0) process.off('exit', terminateRunning);
  });
}

function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && 'code' in err;
}
