import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The machine's Postgres (`.ci/run` makes sure one answers): trust auth, user postgres. */
export const POSTGRES_ADMIN_URL =
  process.env.THRESHOLD_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * Creates a database of its own (`threshold_test_<random>`) and returns its URL and a drop().
 * An unreachable Postgres fails the test with a message saying so, never skips it.
 */
export async function createTestDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `threshold_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({
    connectionString: POSTGRES_ADMIN_URL,
    connectionTimeoutMillis: 5000,
  });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(
      `Postgres is not reachable at ${POSTGRES_ADMIN_URL} (${(err as Error).message}): these tests need it; ` +
        'run `bash .ci/run`, which installs and starts one, or start one with trust auth for local TCP',
      { cause: err },
    );
  }
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
