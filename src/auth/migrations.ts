import type { Logger } from '../log.ts';
import type { AuthDatabase } from './database.ts';

export interface Migration {
  version: number;
  name: string;
  /** Run in order, in the migration's transaction. */
  statements: string[];
}

/**
 * The auth schema, one version after another. Never edit a released migration: add the next
 * one. Times the code compares (expiry, send windows) are epoch ms in `double precision`,
 * which both drivers return as numbers; the rest are `timestamptz` for people to read.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'users and phone codes',
    statements: [
      `CREATE TABLE users (
        id text PRIMARY KEY,
        first text NOT NULL DEFAULT '',
        last text NOT NULL DEFAULT '',
        phone text NOT NULL UNIQUE,
        state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'verified')),
        created_at timestamptz NOT NULL DEFAULT now(),
        verified_at timestamptz
      )`,
      // One row per phone: its current code (hashed) and the times of its recent sends.
      `CREATE TABLE phone_codes (
        phone text PRIMARY KEY,
        code_hash text,
        expires_at double precision NOT NULL DEFAULT 0,
        failed_checks integer NOT NULL DEFAULT 0,
        sends double precision[] NOT NULL DEFAULT '{}'
      )`,
      // Secrets the deployment generates for itself (the JWT secret of a node without one).
      `CREATE TABLE auth_settings (
        name text PRIMARY KEY,
        value text NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    name: 'api keys',
    statements: [
      // The secret is kept as its SHA-256 only: it is 256 random bits, so no slow hash is needed.
      `CREATE TABLE api_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        scopes text[] NOT NULL,
        secret_hash text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
      )`,
    ],
  },
  {
    version: 3,
    name: 'invites and connections',
    statements: [
      // The invitee is always a user: one without an account gets a pending row, so verifying
      // that phone later keeps the id and the invite simply becomes one they received.
      `CREATE TABLE invites (
        id text PRIMARY KEY,
        inviter text NOT NULL,
        invitee text NOT NULL REFERENCES users (id),
        first text,
        last text,
        state text NOT NULL DEFAULT 'pending'
          CHECK (state IN ('pending', 'accepted', 'rejected', 'cancelled')),
        seen_at timestamptz,
        cleared_at timestamptz,
        room text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      )`,
      `CREATE INDEX invites_by_inviter ON invites (inviter, created_at DESC)`,
      `CREATE INDEX invites_by_invitee ON invites (invitee, created_at DESC)`,
      // At most one pending invite from one member to another: two at once insert one.
      `CREATE UNIQUE INDEX invites_one_pending ON invites (inviter, invitee) WHERE state = 'pending'`,
      // Two rows per connection, one from each side, so "my connections" is one index range.
      `CREATE TABLE connections (
        member text NOT NULL,
        peer text NOT NULL,
        room text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (member, peer)
      )`,
      `CREATE INDEX connections_by_time ON connections (member, created_at DESC)`,
    ],
  },
];

/** Any constant will do, as long as nothing else in the database uses it as an advisory lock. */
const MIGRATION_LOCK = 0x7448_5245; // "tHRE"

/**
 * Brings the schema up to date. Safe when several nodes start at once against one Postgres:
 * the transaction-scoped advisory lock lets one migrate while the others wait, and those then
 * find nothing left to do.
 */
export async function migrate(
  db: AuthDatabase,
  log: Logger,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const rows = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((r) => Number(r.version)));
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      for (const sql of m.statements) await tx.query(sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
      applied.push(m.version);
    }
    if (applied.length > 0) log.info({ applied }, 'auth database migrated');
    return applied;
  });
}
