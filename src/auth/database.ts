import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Logger } from '../log.ts';

/** What the account code needs of SQL: parameterised queries ($1, $2…) and transactions. */
export interface Queryable {
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<T[]>;
}

export interface AuthDatabase extends Queryable {
  /** Postgres over the network (THRESHOLD_DATABASE_URL), or PGlite embedded in this process. */
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export interface AuthDatabaseOptions {
  /** `postgres://…`; empty: PGlite with its files under `<dataDir>/auth`. */
  url: string;
  dataDir: string;
}

/**
 * Opens the auth database (DESIGN §5, Accounts). The same schema and SQL serve both: PGlite is
 * Postgres compiled to WebAssembly, so `npx threshold node` needs nothing installed, but it is
 * one process's database; nodes that share accounts need a real Postgres.
 */
export async function openAuthDatabase(
  options: AuthDatabaseOptions,
  log: Logger,
): Promise<AuthDatabase> {
  if (options.url) return openPostgres(options.url, log);
  const dir = resolve(options.dataDir, 'auth');
  mkdirSync(dir, { recursive: true });
  const { PGlite } = await import('@electric-sql/pglite');
  const db = await PGlite.create(dir);
  log.info(
    { dir },
    'auth database: embedded PGlite (this node only; set THRESHOLD_DATABASE_URL to share accounts)',
  );
  return {
    kind: 'pglite',
    async query<T>(sql: string, params: readonly unknown[] = []) {
      return (await db.query<T>(sql, params as unknown[])).rows;
    },
    transaction: (fn) =>
      db.transaction((tx) =>
        fn({
          async query<T>(sql: string, params: readonly unknown[] = []) {
            return (await tx.query<T>(sql, params as unknown[])).rows;
          },
        }),
      ),
    close: () => db.close(),
  };
}

async function openPostgres(url: string, log: Logger): Promise<AuthDatabase> {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client that loses its server emits 'error' on the pool; without a listener it would crash the node.
  pool.on('error', (err) => log.warn({ err: err.message }, 'auth database connection lost'));
  const where = new URL(url);
  log.info(
    { host: where.host, database: where.pathname.slice(1) },
    'auth database: Postgres (THRESHOLD_DATABASE_URL)',
  );
  return {
    kind: 'postgres',
    async query<T>(sql: string, params: readonly unknown[] = []) {
      return (await pool.query(sql, params as unknown[])).rows as T[];
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn({
          async query<R>(sql: string, params: readonly unknown[] = []) {
            return (await client.query(sql, params as unknown[])).rows as R[];
          },
        });
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
