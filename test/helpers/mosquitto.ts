/**
 * A private `mosquitto` broker for MQTT tests, on a free loopback port with its own config
 * and persistence directory: never the machine's own broker on 1883.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { access, constants, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, onTestFinished } from 'vitest';
import { freePort } from './ports.ts';

export interface Mosquitto {
  /** `mqtt://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  pid(): number | undefined;
  /** Everything the broker logged so far. */
  output(): string;
  /**
   * SIGTERM, then starts it again on the same port and directory: sessions and the messages
   * they hold come back from its persistence file.
   */
  restart(): Promise<void>;
  /** SIGTERM (SIGKILL after 5 s), then removes its directory. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 10_000;
const STOP_GRACE_MS = 5_000;
// Debian and Ubuntu put it in /usr/sbin, which is not on every user's PATH.
const SBIN_DIRS = ['/usr/sbin', '/usr/local/sbin', '/opt/homebrew/sbin'];

/**
 * Starts a broker for the test that calls it and stops it when the test finishes. Fails,
 * never skips, when mosquitto is not installed: set MOSQUITTO_BIN or install it.
 */
export async function startMosquitto(): Promise<Mosquitto> {
  let broker: Mosquitto | undefined;
  try {
    onTestFinished(async () => {
      await broker?.stop();
    });
  } catch (err) {
    throw new Error(
      'startMosquitto() must be called inside a test; use useMosquitto() at the top of a ' +
        'describe for a broker shared by the suite',
      { cause: err },
    );
  }
  broker = await launchMosquitto();
  return broker;
}

/** Starts a broker before the enclosing file or `describe` and stops it after its last test. */
export function useMosquitto(): () => Mosquitto {
  let broker: Mosquitto | undefined;
  beforeAll(async () => {
    broker = await launchMosquitto();
  });
  afterAll(async () => {
    await broker?.stop();
  });
  return () => {
    if (!broker) throw new Error('useMosquitto(): the broker starts in beforeAll');
    return broker;
  };
}

/** MOSQUITTO_BIN, else `mosquitto` on PATH or in an sbin directory. */
export async function findMosquitto(): Promise<string> {
  const fromEnv = process.env.MOSQUITTO_BIN;
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...SBIN_DIRS];
  const candidates = fromEnv ? [fromEnv] : dirs.map((d) => join(d, 'mosquitto'));
  for (const candidate of candidates) {
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  throw new Error(
    [
      fromEnv
        ? `MOSQUITTO_BIN=${fromEnv} is not an executable file.`
        : `The MQTT tests need the mosquitto broker, and there is none on PATH or in ${SBIN_DIRS.join(', ')}.`,
      'Install it (`apt-get install mosquitto`, `brew install mosquitto`) or set MOSQUITTO_BIN.',
      'The tests start their own broker on a free port; no system service is needed.',
    ].join('\n'),
  );
}

async function launchMosquitto(): Promise<Mosquitto> {
  const binary = await findMosquitto();
  const dir = await mkdtemp(join(tmpdir(), 'threshold-mosquitto-'));
  const port = await freePort();
  const config = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence true',
    `persistence_location ${dir}/`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
    'log_type information',
    // Started as root, mosquitto would switch to user "mosquitto", which cannot use `dir`.
    ...(process.getuid?.() === 0 ? ['user root'] : []),
  ];
  const configFile = join(dir, 'mosquitto.conf');
  await writeFile(configFile, `${config.join('\n')}\n`);

  let out = '';
  let running: Running | undefined;
  const launch = async (): Promise<void> => {
    const r = spawnBroker(binary, configFile, (chunk) => (out += chunk));
    running = r;
    try {
      await waitUntilListening(port, r);
    } catch (err) {
      await terminate(r);
      throw new Error(
        `mosquitto (${binary}) did not start on port ${port}: ${(err as Error).message}\n${out}`,
        { cause: err },
      );
    }
  };
  const stop = async (): Promise<void> => {
    if (running) await terminate(running);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    await launch();
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    pid: () => running?.child.pid,
    output: () => out,
    async restart() {
      if (running) await terminate(running);
      await launch();
    },
    stop,
  };
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
  spawnError: Promise<Error>;
}

function spawnBroker(binary: string, configFile: string, onOutput: (chunk: string) => void) {
  const child = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8');
    stream?.on('data', onOutput);
  }
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => child.pid === undefined && resolve());
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  // A test process that dies without stop() must not leave brokers behind.
  const orphan = (): void => void child.kill('SIGTERM');
  process.once('exit', orphan);
  void exited.then(() => process.off('exit', orphan));
  return { child, exited, spawnError };
}

async function waitUntilListening(port: number, { child, exited, spawnError }: Running) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let gone = false;
  void exited.then(() => (gone = true));
  let failure: Error | undefined;
  void spawnError.then((err) => (failure = err));
  for (;;) {
    if (failure) throw failure;
    if (gone) throw new Error(`exited (${child.signalCode ?? `exit code ${child.exitCode}`})`);
    if (await accepts(port)) return;
    if (Date.now() > deadline) throw new Error(`not listening within ${READY_TIMEOUT_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function terminate({ child, exited }: Running): Promise<void> {
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill('SIGTERM');
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}
