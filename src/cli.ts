import { KEYS_HELP, runKeys } from './auth/key-command.ts';
import { loadConfig } from './config.ts';
import { lockDataDir } from './data-dir-lock.ts';
import { DOCTOR_HELP, runDoctor } from './doctor.ts';
import { ConfigError, ThresholdError } from './errors.ts';
import { CLUSTER_HELP, runCluster } from './local-cluster.ts';
import { createLogger } from './log.ts';
import { startNode, VERSION } from './node.ts';
import { RedisNotInstalledError } from './redis/embedded.ts';
import { SETTINGS_HELP, settingFlags, settingsTable } from './settings-command.ts';
import { onStopSignals, signalExitCode } from './stop-signals.ts';

const USAGE = `Usage: threshold <command> [--config FILE] [--setting value ...]

Commands:
  node        run a relay node (with its own local redis-server unless THRESHOLD_REDIS_URL is set)
  cluster     run a local mesh: a redis-server (or --redis-cluster M) and --nodes N relay nodes
  keys        create and list API keys in the auth database
  settings    list every setting with its default, environment variable, flag and meaning
  doctor      check Redis, the auth database, Twilio and the public URL with these settings
  help        show this text; \`threshold help <command>\` shows a command's

  --help      after a command: that command's flags (\`threshold node --help\`)
  --version   print the version

--config FILE (or THRESHOLD_CONFIG=FILE) reads settings from a JSON file over config/default.json;
environment variables and flags still win over it.
`;

const NODE_HELP = () => `Usage: threshold node [--config FILE] [--<setting> VALUE ...]

Runs a relay node, with its own local redis-server under --data-dir unless --redis-url (or
THRESHOLD_REDIS_URL) names a Redis. SIGTERM or Ctrl-C stops it gracefully.

  --config FILE  a JSON settings file over config/default.json (or THRESHOLD_CONFIG=FILE)
  --help         show this text

Every setting is a flag (and a THRESHOLD_* variable; \`threshold settings\` says what each means):
${settingFlags()}`;

interface Command {
  run(argv: string[]): Promise<number>;
  help(): string;
}

const COMMANDS: Record<string, Command> = {
  node: { run: runNode, help: NODE_HELP },
  cluster: { run: runCluster, help: CLUSTER_HELP },
  keys: { run: runKeys, help: () => KEYS_HELP },
  doctor: { run: (argv) => runDoctor(argv), help: DOCTOR_HELP },
  settings: {
    run: async () => {
      process.stdout.write(settingsTable());
      return 0;
    },
    help: () => SETTINGS_HELP,
  },
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === '--version' || command === '-v') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    if (rest[0] === undefined) {
      process.stdout.write(USAGE);
      return 0;
    }
    const about = COMMANDS[rest[0]];
    if (!about) return unknownCommand(rest[0]);
    process.stdout.write(about.help());
    return 0;
  }
  const found = COMMANDS[command];
  if (!found) return unknownCommand(command);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(found.help());
    return 0;
  }
  return found.run(rest);
}

function unknownCommand(command: string): number {
  process.stderr.write(`threshold: unknown command "${command}"\n\n${USAGE}`);
  return 2;
}

async function runNode(argv: string[]): Promise<number> {
  const config = loadConfig({ argv });
  const log = createLogger(config.logLevel, {}, config.logFormat);
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
