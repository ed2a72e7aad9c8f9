import { KEYS_USAGE, runKeys } from './auth/key-command.ts';
import { fileDefaults, loadConfig, settings } from './config.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { ConfigError, ThresholdError } from './errors.ts';
import { runCluster } from './local-cluster.ts';
import { createLogger } from './log.ts';
import { startNode } from './node.ts';
import { RedisNotInstalledError } from './redis/embedded.ts';
import { onStopSignals, signalExitCode } from './stop-signals.ts';

const USAGE = `Usage: threshold <command> [--config FILE] [--setting value ...]

Commands:
  node        run a relay node (with its own local redis-server unless THRESHOLD_REDIS_URL is set)
  cluster     run a local mesh: a redis-server and --nodes N relay nodes (default 3) on
              consecutive ports from --port; other flags go to every node; Ctrl-C stops all.
              --redis-cluster M (3 to 9) starts a local Redis Cluster of M masters instead
              of the redis-server, under <data-dir>/redis-cluster
${KEYS_USAGE}  settings    list every setting with its default, environment variable and flag
  help        show this text

--config FILE (or THRESHOLD_CONFIG=FILE) reads settings from a JSON file over config/default.json;
environment variables and flags still win over it.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'node':
      return runNode(rest);
    case 'cluster':
      return runCluster(rest);
    case 'keys':
      return runKeys(rest);
    case 'settings':
      printSettings();
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`threshold: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function runNode(argv: string[]): Promise<number> {
  const config = loadConfig({ argv });
  const log = createLogger(config.logLevel);
  // Listen before starting: a signal during start-up must stop the node gracefully once it is
  // up, not kill it half-way.
  const signalled = onStopSignals({
    repeated: (signal) =>
      log.warn({ signal }, 'already stopping; a third signal (Ctrl-C again) forces the exit'),
    forced: (signal) => {
      log.error({ signal }, 'forced exit before the graceful stop finished');
      // The exit handlers still stop the local redis-server (SIGTERM: it flushes its
      // append-only file) and release the data directory.
      process.exit(signalExitCode(signal));
    },
  });
  // Before anything starts: a second node on this directory would stop our redis-server.
  if (!config.redisUrl) lockDataDir(config.dataDir, 'node');
  const node = await startNode(config, log);
  const signal = await signalled;
  log.info({ signal }, 'shutdown requested');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<number>((resolve) => {
    timer = setTimeout(() => {
      log.error(
        { timeoutMs: config.shutdownTimeoutMs },
        'graceful stop took too long; exiting anyway (unfinished entries stay pending in the funnel)',
      );
      resolve(1);
    }, config.shutdownTimeoutMs);
  });
  const stopped = node.stop().then(
    () => 0,
    (err: unknown) => {
      log.error({ err }, 'graceful stop failed');
      return 1;
    },
  );
  const code = await Promise.race([stopped, timeout]);
  clearTimeout(timer);
  return code;
}

function printSettings(): void {
  const defaults = fileDefaults();
  for (const leaf of settings(defaults)) {
    let value: unknown = defaults;
    for (const key of leaf.path) value = (value as Record<string, unknown>)[key];
    process.stdout.write(
      `${leaf.path.join('.').padEnd(24)} ${JSON.stringify(value).padEnd(10)} ${leaf.env.padEnd(36)} --${leaf.flag}\n`,
    );
  }
  // Lists (channels) have no variable or flag.
  for (const [key, value] of Object.entries(defaults)) {
    if (Array.isArray(value)) {
      process.stdout.write(
        `${key.padEnd(24)} ${JSON.stringify(value).padEnd(10)} (a list: set it in a --config file)\n`,
      );
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (
      err instanceof ConfigError ||
      err instanceof RedisNotInstalledError ||
      err instanceof ThresholdError
    ) {
      process.stderr.write(`threshold: ${err.message}\n`);
    } else {
      process.stderr.write(
        `threshold: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
    }
    process.exit(1);
  },
);
