/**
 * The lifecycle as a newcomer meets it: `npx threshold node` (or `npm start`, or
 * `npx threshold cluster`) typed into a terminal, stopped with Ctrl-C. A pseudo-terminal
 * turns Ctrl-C into SIGINT for the whole foreground process group (npx and the node), and
 * npx forwards a copy of its own: the node gets SIGINT twice.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { freePort } from '../helpers/ports.ts';
import { alive, freePortRange, processesUsing, runInTerminal } from '../helpers/process.ts';

/** A fresh data directory; whatever still runs in it when the test ends is killed. */
async function dataDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `threshold-terminal-${name}-`));
  onTestFinished(async () => {
    for (const pid of processesUsing(dir)) process.kill(pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Resolves once `check` holds, or fails after `ms` (a process needs a moment to go). */
async function eventually(check: () => boolean, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

function redisPid(output: string): number {
  const pid = Number(/"redisPid":(\d+)/.exec(output)?.[1]);
  expect(pid, output).toBeGreaterThan(0);
  return pid;
}

/**
 * A request that never finishes its headers: the node's stop waits for it for its grace period
 * (2 s with the default shutdownTimeoutMs), time enough to press Ctrl-C again.
 */
async function holdStop(port: number): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  onTestFinished(() => void socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
}

/** No stack trace: a refusal is one line naming the cause and the way out. */
function expectOneLineError(output: string, line: RegExp): void {
  expect(output).toMatch(line);
  expect(output).not.toMatch(/^\s+at /m);
  expect(output).not.toContain('failed to start');
}

describe('Ctrl-C in a terminal', () => {
  it.each([
    ['npx threshold node', 'npx threshold node'],
    ['npm start', 'npm start --'],
  ])(
    '`%s`: one Ctrl-C stops the node gracefully with 0, and its redis-server with it',
    async (_, command) => {
      const dir = await dataDir('ctrl-c');
      const port = await freePort();
      const term = runInTerminal(`${command} --port ${port} --data-dir ${dir}`);
      await term.waitFor(/relay node started/, 30_000);
      const redis = redisPid(term.output());

      term.ctrlC();
      expect((await term.exited).code, term.output()).toBe(0);
      const out = term.output();
      expect(out).toContain('"msg":"stopped"');
      // The second SIGINT (npx's copy) is noted, and cuts nothing short.
      expect(out).not.toMatch(/forced|could not release lease|graceful stop failed/);
      expect(alive(redis)).toBe(false);
      expect(processesUsing(dir)).toEqual([]);
      expect(existsSync(join(dir, 'threshold.lock'))).toBe(false);
    },
    40_000,
  );

  it('without npx (one SIGINT per Ctrl-C), a second Ctrl-C while stopping cuts nothing short', async () => {
    const dir = await dataDir('twice');
    const port = await freePort();
    const term = runInTerminal(`node bin/threshold.js node --port ${port} --data-dir ${dir}`);
    await term.waitFor(/relay node started/, 30_000);
    const redis = redisPid(term.output());
    await holdStop(port);

    term.ctrlC();
    await term.waitFor(/"msg":"stopping/);
    term.ctrlC();
    await term.waitFor(/already stopping/);
    expect((await term.exited).code, term.output()).toBe(0);
    expect(term.output()).toContain('"msg":"stopped"');
    expect(term.output()).not.toMatch(/forced|could not release lease|graceful stop failed/);
    expect(alive(redis)).toBe(false);
    expect(processesUsing(dir)).toEqual([]);
  }, 40_000);

  it('through npx, Ctrl-C again while stopping forces the exit, and still stops the redis-server', async () => {
    const dir = await dataDir('forced');
    const port = await freePort();
    const term = runInTerminal(`npx threshold node --port ${port} --data-dir ${dir}`);
    await term.waitFor(/relay node started/, 30_000);
    const redis = redisPid(term.output());
    await holdStop(port);

    // Through npx a Ctrl-C is two signals, unless the kernel merges them (a signal already
    // pending is not queued twice): the second Ctrl-C is the third signal, or the third is.
    term.ctrlC();
    await term.waitFor(/"msg":"stopping/);
    for (let i = 0; i < 5 && term.child.exitCode === null; i++) {
      await new Promise((r) => setTimeout(r, 100));
      term.ctrlC();
    }
    expect((await term.exited).code, term.output()).toBe(130);
    expect(term.output()).toMatch(/forced exit/);
    expect(term.output()).not.toContain('"msg":"stopped"');
    // Redis got its SIGTERM on the way out (it flushes the append-only file, then exits).
    expect(await eventually(() => !alive(redis))).toBe(true);
    expect(await eventually(() => processesUsing(dir).length === 0)).toBe(true);
    expect(existsSync(join(dir, 'threshold.lock'))).toBe(false);
  }, 40_000);

  it('`npx threshold cluster --nodes 2`: Ctrl-C stops every node, then Redis, with 0', async () => {
    const dir = await dataDir('cluster');
    const port = await freePortRange(2);
    const term = runInTerminal(`npx threshold cluster --nodes 2 --port ${port} --data-dir ${dir}`);
    await term.waitFor(/Ctrl-C stops everything/, 40_000);
    const out = term.output();
    const pids = [...out.matchAll(/ready \(pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids, out).toHaveLength(2);
    const redis = Number(/local redis-server, pid (\d+)/.exec(out)?.[1]);
    // On a terminal, progress is one line rewritten in place (carriage return, erase line).
    expect(out).toContain('\r\x1b[2K[2/3] starting 2 relay nodes: 2/2 ready');

    term.ctrlC();
    expect((await term.exited).code, term.output()).toBe(0);
    expect(term.output()).toMatch(/^stopped\r?$/m);
    expect(term.output()).not.toMatch(/forced/);
    for (let i = 1; i <= 2; i++) {
      const log = readFileSync(join(dir, 'cluster', `node-${i}.log`), 'utf8');
      expect(log, `node-${i}`).toMatch(/"msg":"stopped"/);
      expect(log, `node-${i}`).not.toMatch(/could not release lease|graceful stop failed/);
    }
    for (const pid of [...pids, redis]) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(processesUsing(dir)).toEqual([]);
  }, 60_000);
});

describe('refusals, in one line', () => {
  it('a second node on the same data directory refuses, and the first keeps working', async () => {
    const dir = await dataDir('shared');
    const port = await freePort();
    const first = runInTerminal(`npx threshold node --port ${port} --data-dir ${dir}`);
    await first.waitFor(/relay node started/, 30_000);
    const redis = redisPid(first.output());

    const second = runInTerminal(`npx threshold node --port ${await freePort()} --data-dir ${dir}`);
    expect((await second.exited).code).toBe(1);
    expectOneLineError(
      second.output(),
      new RegExp(
        `data directory ${dir} is in use by another threshold node \\(pid \\d+\\); stop it, or use --data-dir`,
      ),
    );

    expect(alive(redis)).toBe(true);
    expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
    first.ctrlC();
    expect((await first.exited).code, first.output()).toBe(0);
    expect(first.output()).not.toMatch(/ECONNREFUSED|Redis connection error/);
  }, 60_000);

  it('a taken port', async () => {
    const dir = await dataDir('port');
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    onTestFinished(() => new Promise<void>((r) => holder.close(() => r())));
    const address = holder.address();
    const port = typeof address === 'object' && address ? address.port : 0;

    const node = runInTerminal(`npx threshold node --port ${port} --data-dir ${dir}`);
    expect((await node.exited).code).toBe(1);
    expectOneLineError(
      node.output(),
      new RegExp(`port ${port} is in use on 127\\.0\\.0\\.1: stop what uses it or pass --port`),
    );
    // The redis-server it had started for itself went with it.
    expect(await eventually(() => processesUsing(dir).length === 0)).toBe(true);
  }, 40_000);
});
