/**
 * `threshold doctor`: checks what a node started with the same settings (config file,
 * environment, flags) would depend on, one line per check, and says what to fix.
 */
import { loadConfig } from './config.ts';
import {
  checkDatabase,
  checkPublicUrl,
  checkTwilio,
  type Finding,
  type Outcome,
} from './doctor-checks.ts';
import { checkRedis } from './doctor-redis.ts';
import { ConfigError } from './errors.ts';
import { settingFlags } from './settings-command.ts';

const DEFAULT_TIMEOUT_MS = 5000;

export const DOCTOR_HELP =
  (): string => `Usage: threshold doctor [--timeout-ms MS] [--config FILE] [--<setting> VALUE ...]

Checks, with the configuration a node would use (config file, THRESHOLD_* variables, flags):
  redis              reachable at redisUrl (or redis-server installed, without one)
  redis cluster      standalone, or a Redis Cluster with cluster_state ok and every slot covered
  redis version      6.2 or newer; 7.0 or newer on a Redis Cluster
  redis persistence  the append-only file (or at least RDB snapshots) keeps data across restarts
  auth database      the Postgres of databaseUrl (or the embedded PGlite) answers and is migrated
  twilio             the credentials are accepted (an account fetch at twilio.apiUrl), if set
  public url         publicUrl is set when Twilio is, https beyond loopback, and /healthz answers

One line each: ok, warn or FAIL, and what to fix. Exits 1 when a check failed, else 0
(warnings do not fail).

  --timeout-ms MS  how long each check may wait for an answer (default ${DEFAULT_TIMEOUT_MS})
  --config FILE    a JSON settings file over config/default.json (or THRESHOLD_CONFIG=FILE)
  --help           show this text

Every setting is a flag, as for \`threshold node\`:
${settingFlags()}`;

/** Column widths: the outcome, then the check's name. */
const WIDTH = { outcome: 4, check: 17 };

/** Splits `--timeout-ms` off the flags; the rest are the node's settings. */
export function parseDoctorArgs(argv: string[]): { timeoutMs: number; rest: string[] } {
  const rest: string[] = [];
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const match = /^--timeout-ms(?:=(.*))?$/.exec(arg);
    if (!match) {
      rest.push(arg);
      continue;
    }
    timeoutMs = Number(match[1] ?? argv[++i]);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 600_000) {
      throw new ConfigError('timeoutMs', '--timeout-ms must be a whole number from 100 to 600000');
    }
  }
  return { timeoutMs, rest };
}

/** Runs every check and prints its line; resolves with the exit code. */
export async function runDoctor(
  argv: string[],
  {
    out = process.stdout,
    env = process.env,
  }: { out?: NodeJS.WritableStream; env?: NodeJS.ProcessEnv } = {},
): Promise<number> {
  const { timeoutMs, rest } = parseDoctorArgs(argv);
  const config = loadConfig({ argv: rest, env });
  const groups = await Promise.all([
    checkRedis(config, timeoutMs),
    checkDatabase(config, timeoutMs).then((f) => [f]),
    checkTwilio(config, timeoutMs).then((f) => [f]),
    checkPublicUrl(config, timeoutMs).then((f) => [f]),
  ]);
  const findings = groups.flat();
  for (const f of findings) out.write(`${line(f)}\n`);
  const count = (o: Outcome) => findings.filter((f) => f.outcome === o).length;
  const failed = count('FAIL');
  out.write(
    `${findings.length} checks: ${count('ok')} ok, ${count('warn')} warn, ${failed} FAIL\n`,
  );
  return failed > 0 ? 1 : 0;
}

function line(f: Finding): string {
  return `${f.outcome.padEnd(WIDTH.outcome)}  ${f.check.padEnd(WIDTH.check)}  ${f.detail}`;
}
