import { resolve } from 'node:path';
import { loadConfig } from '../config.ts';
import { DataDirInUseError, lockDataDir } from '../data-dir-lock.ts';
import { ThresholdError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { ApiKeys, NewKey } from './api-keys.ts';
import { openAuthDatabase } from './database.ts';
import { migrate } from './migrations.ts';

export const KEYS_HELP = `Usage: threshold keys create --scope SCOPE ... [--name NAME]
       threshold keys list

API keys in the auth database (--database-url / THRESHOLD_DATABASE_URL, or the embedded one
under --data-dir). Revoke with DELETE /v1/keys/<id>: it tells every node at once.

  create          prints the new key (shown once) on stdout
  list            prints every key (id, name, scopes, created, revoked), no secrets
  --scope SCOPE   admin, or publish:<room>; repeat it for more scopes (create)
  --name NAME     what the key is for (create; default: cli)
  --config FILE   a JSON settings file, as for the node; any other setting flag too
  --help          show this text
`;

/** `threshold keys …`: the bootstrap beside THRESHOLD_ADMIN_TOKEN, run where the node's config is. */
export async function runKeys(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  const scopes: string[] = [];
  let name = 'cli';
  const configArgs: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string;
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag !== '--scope' && flag !== '--name') {
      configArgs.push(arg);
      continue;
    }
    const value = inline ?? rest[++i];
    if (value === undefined) throw usage(`${flag} needs a value`);
    if (flag === '--scope') scopes.push(value);
    else name = value;
  }
  if (action !== 'create' && action !== 'list')
    throw usage(`keys: expected "create" or "list"\n\n${KEYS_HELP}`);
  if (action === 'create' && scopes.length === 0)
    throw usage('keys create: give at least one --scope (admin, or publish:<room>)');

  const config = loadConfig({ argv: configArgs });
  const log = createLogger('warn');
  const lock = config.databaseUrl ? undefined : lockEmbedded(config.dataDir);
  try {
    const db = await openAuthDatabase({ url: config.databaseUrl, dataDir: config.dataDir }, log);
    try {
      await migrate(db, log);
      const keys = new ApiKeys(
        async () => db,
        async () => {},
      );
      if (action === 'list') {
        for (const k of await keys.list())
          process.stdout.write(
            `${k.id}  ${k.name}  ${k.scopes.join(',')}  created ${new Date(k.createdAt).toISOString()}${k.revokedAt ? `  revoked ${new Date(k.revokedAt).toISOString()}` : ''}\n`,
          );
        return 0;
      }
      const parsed = NewKey.safeParse({ name, scopes });
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw usage(
          `keys create: --${issue?.path[0] === 'name' ? 'name' : 'scope'}: ${issue?.message}`,
        );
      }
      const created = await keys.create(parsed.data.name, [...new Set(parsed.data.scopes)]);
      process.stderr.write(
        `API key ${created.id} (${created.name}, ${created.scopes.join(',')}): shown once, keep it now\n`,
      );
      process.stdout.write(`${created.key}\n`);
      return 0;
    } finally {
      await db.close();
    }
  } finally {
    lock?.release();
  }
}

/** The embedded database is one process's: a node that has it open keeps it. */
function lockEmbedded(dataDir: string) {
  try {
    return lockDataDir(resolve(dataDir, 'auth'), 'keys command');
  } catch (err) {
    if (!(err instanceof DataDirInUseError)) throw err;
    throw new ThresholdError(
      'data_dir_in_use',
      409,
      `${err.message}. While that node runs, create keys through it: POST /v1/keys with the admin token`,
    );
  }
}

const usage = (message: string) => new ThresholdError('usage', 400, message);
