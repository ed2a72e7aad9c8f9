import { AsyncLocalStorage } from 'node:async_hooks';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import twilio from 'twilio';
import { MIGRATIONS } from './auth/migrations.ts';
import { type Config, isLoopback } from './config.ts';
import { dataDirOwner } from './data-dir-lock.ts';
import { ApiBaseRequestClient } from './delivery/sms-client.ts';

/**
 * `threshold doctor`'s checks besides Redis's (doctor-redis.ts): the auth database, Twilio's
 * credentials and the public URL. Each answers one Finding, whose detail says what to fix.
 */

export type Outcome = 'ok' | 'warn' | 'FAIL';

export interface Finding {
  check: string;
  outcome: Outcome;
  /** What was found and, unless ok, what to do about it. */
  detail: string;
}

export const ok = (check: string, detail: string): Finding => ({ check, outcome: 'ok', detail });
export const warn = (check: string, detail: string): Finding => ({
  check,
  outcome: 'warn',
  detail,
});
export const fail = (check: string, detail: string): Finding => ({
  check,
  outcome: 'FAIL',
  detail,
});

/** The auth database: reachable, and which migrations it has (a node applies missing ones). */
export async function checkDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  timeoutMs: number,
): Promise<Finding> {
  if (config.databaseUrl) return postgres(config.databaseUrl, timeoutMs);
  const dir = resolve(config.dataDir, 'auth');
  const where = `embedded PGlite under ${dir}`;
  if (!existsSync(dir)) {
    return ok('auth database', `${where}, created and migrated at the node's first start`);
  }
  // PGlite is one process's database: never open it under a running node.
  const owner = dataDirOwner(config.dataDir);
  if (owner) {
    return ok('auth database', `${where}, in use by ${owner.role} pid ${owner.pid} (not opened)`);
  }
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create(dir);
  try {
    return migrations(where, await appliedVersions((sql) => db.query(sql).then((r) => r.rows)));
  } catch (err) {
    return fail('auth database', `${where}: ${reason(err)}`);
  } finally {
    await db.close();
  }
}

async function postgres(url: string, timeoutMs: number): Promise<Finding> {
  const { default: pg } = await import('pg');
  const where = redact(url);
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return fail(
      'auth database',
      `cannot reach ${where}: ${reason(err)}; start Postgres there, or fix databaseUrl (THRESHOLD_DATABASE_URL, --database-url)`,
    );
  }
  try {
    return migrations(where, await appliedVersions((sql) => client.query(sql).then((r) => r.rows)));
  } catch (err) {
    return fail('auth database', `${where}: ${reason(err)}`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Versions in schema_migrations; none when the table is not there yet. */
async function appliedVersions(query: (sql: string) => Promise<unknown[]>): Promise<number[]> {
  const exists = (await query(
    "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
  )) as { present: boolean }[];
  if (!exists[0]?.present) return [];
  const rows = (await query('SELECT version FROM schema_migrations ORDER BY version')) as {
    version: number;
  }[];
  return rows.map((r) => Number(r.version));
}

function migrations(where: string, applied: number[]): Finding {
  const known = MIGRATIONS.map((m) => m.version);
  const pending = known.filter((v) => !applied.includes(v));
  const unknown = applied.filter((v) => !known.includes(v));
  const latest = MIGRATIONS.at(-1);
  if (unknown.length > 0) {
    return warn(
      'auth database',
      `${where} has migrations ${unknown.join(', ')} this version does not know: a newer Threshold migrated it; run that version`,
    );
  }
  if (pending.length > 0) {
    return warn(
      'auth database',
      `${where} answers; migrations ${pending.join(', ')} of ${known.length} not applied yet: the next node to start applies them`,
    );
  }
  return ok(
    'auth database',
    `${where} answers, migrated: ${known.length} of ${known.length} migrations (latest ${latest?.version} ${latest?.name})`,
  );
}

/** Twilio's credentials, by fetching the account with the real client at twilio.apiUrl. */
export async function checkTwilio(
  config: Pick<Config, 'twilio'>,
  timeoutMs: number,
): Promise<Finding> {
  const { accountSid, authToken, apiUrl } = config.twilio;
  if (!accountSid && !authToken) {
    return ok(
      'twilio',
      'not configured: SMS runs in development mode (texts are logged, not sent)',
    );
  }
  if (!accountSid || !authToken) {
    return warn(
      'twilio',
      `only ${accountSid ? 'twilio.accountSid' : 'twilio.authToken'} is set: SMS stays in development mode until both are (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)`,
    );
  }
  const base = apiUrl.replace(/\/+$/, '');
  const client = twilio(accountSid, authToken, {
    httpClient: new ApiBaseRequestClient(base, timeoutMs, new AsyncLocalStorage()),
    timeout: timeoutMs,
  });
  try {
    const account = await client.api.v2010.accounts(accountSid).fetch();
    const name = account.friendlyName ? ` (${account.friendlyName})` : '';
    if (account.status && account.status !== 'active') {
      return fail(
        'twilio',
        `account ${accountSid}${name} is ${account.status}: texts will not be sent`,
      );
    }
    return ok('twilio', `account ${accountSid}${name} is active at ${base}`);
  } catch (err) {
    if (err instanceof twilio.RestException) {
      return err.status === 401 || err.status === 403
        ? fail(
            'twilio',
            `${base} refuses account ${accountSid} (${err.status} ${err.code ?? ''}: ${err.message}): invalid credentials; check twilio.accountSid and twilio.authToken (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)`,
          )
        : fail('twilio', `${base} answered ${err.status} ${err.code ?? ''}: ${err.message}`);
    }
    return fail(
      'twilio',
      `cannot reach ${base}: ${reason(err)}; check twilio.apiUrl (THRESHOLD_TWILIO_API_URL) and this machine's network`,
    );
  }
}

/** The URL Twilio calls: set when Twilio is, https beyond loopback, and answering /healthz. */
export async function checkPublicUrl(
  config: Pick<Config, 'publicUrl' | 'twilio'>,
  timeoutMs: number,
): Promise<Finding> {
  const twilioSet = Boolean(config.twilio.accountSid && config.twilio.authToken);
  if (!config.publicUrl) {
    return twilioSet
      ? warn(
          'public url',
          'not set: webhook signatures are checked against advertiseUrl and no delivery statuses are asked for; set publicUrl (THRESHOLD_PUBLIC_URL) to the URL Twilio calls',
        )
      : ok('public url', 'not set (only Twilio calls it, and Twilio is not configured)');
  }
  const base = config.publicUrl.replace(/\/+$/, '');
  const url = new URL(base);
  const clear =
    url.protocol !== 'https:' && !isLoopback(url.hostname.replace(/^\[|\]$/g, ''))
      ? `; it is ${url.protocol}// beyond loopback: put the node behind https (Twilio and browsers send tokens and texts to it)`
      : '';
  let answer: Response;
  try {
    answer = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause ?? err;
    return warn(
      'public url',
      `${base}/healthz does not answer from here (${reason(cause)}): fine before the first node starts; otherwise check its DNS, proxy and firewall${clear}`,
    );
  }
  if (!answer.ok) {
    return fail(
      'public url',
      `${base}/healthz answered ${answer.status}: make it reach a node (a proxy must pass /healthz and /twilio/* through)${clear}`,
    );
  }
  return (clear ? warn : ok)('public url', `${base}/healthz answers ${answer.status}${clear}`);
}

/** The URL without its password: doctor's output ends up in tickets and chats. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/** An error's code and message, once each. */
export function reason(err: unknown): string {
  const e = err as { code?: unknown; message?: string };
  const message = e.message || String(err);
  return typeof e.code === 'string' && !message.includes(e.code) ? `${e.code} ${message}` : message;
}
