import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { NotFoundError } from '../errors.ts';
import { newUlid } from '../ids.ts';
import { ROOM_ID } from '../redis/keys.ts';
import type { AuthDatabase } from './database.ts';

/** A publish key's messages are sent as the service it names: the sender rules apply. */
export const KeyName = z
  .string()
  .regex(/^[A-Za-z0-9._@-]{1,64}$/, '1-64 characters: letters, digits and . _ @ -');

/** Scopes beside `admin` and `publish:<room>`: one family of routes each (DESIGN §5). */
export const ROUTE_SCOPES = ['tags', 'notify'] as const;
export type RouteScope = (typeof ROUTE_SCOPES)[number];

export const Scope = z
  .string()
  .refine(
    (s) =>
      s === 'admin' ||
      (ROUTE_SCOPES as readonly string[]).includes(s) ||
      (s.startsWith('publish:') && ROOM_ID.test(s.slice(8))),
    {
      message: `expected "admin", ${ROUTE_SCOPES.map((s) => `"${s}"`).join(', ')} or "publish:<room id>"`,
    },
  );

export const NewKey = z
  .object({
    name: KeyName,
    scopes: z
      .array(Scope)
      .min(1)
      .max(100)
      .refine((s) => !s.includes('admin') || s.length === 1, {
        message: '"admin" already allows everything: give it alone',
      }),
  })
  .strict();

/** What a key may do: everything the admin token may, or what its scopes name. */
export type Grant =
  | { scope: 'admin'; key: string; name: string }
  | {
      scope: 'scoped';
      key: string;
      name: string;
      /** The rooms of its `publish:<room>` scopes. */
      rooms: readonly string[];
      routes: readonly RouteScope[];
    };

export interface KeyRecord {
  id: string;
  name: string;
  scopes: string[];
  createdAt: Date;
  revokedAt: Date | null;
}

/** `thr_<id>_<secret>`: the id finds the row, the secret (256 bits) proves the holder. */
const KEY = /^thr_([0-9a-z]{26})_([A-Za-z0-9_-]{43})$/;
export const isApiKey = (token: string) => token.startsWith('thr_');

const CACHE_MS = 30_000;
const MAX_CACHED = 10_000;

interface Cached {
  hash: Buffer;
  grant: Grant;
  at: number;
}

/**
 * API keys (DESIGN §5): created by an admin, shown once, kept in the auth database as the
 * SHA-256 of their secret. A node checks a key against its cache (read again after 30 s);
 * a revocation is announced on `thr:auth:key-revoked`, so every node forgets the key at once.
 */
export class ApiKeys {
  private readonly cache = new Map<string, Cached>();
  /** When each key was last heard revoked: a read that began before must not be cached. */
  private readonly revokedAt = new Map<string, number>();

  constructor(
    private readonly db: () => Promise<AuthDatabase>,
    /** Tells every node (this one included) that a key is revoked. */
    private readonly announce: (id: string) => Promise<unknown>,
    private readonly now: () => number = Date.now,
  ) {}

  async create(name: string, scopes: readonly string[]): Promise<KeyRecord & { key: string }> {
    const id = newUlid().toLowerCase();
    const secret = randomBytes(32).toString('base64url');
    const db = await this.db();
    const [row] = await db.query<KeyRecord>(
      `INSERT INTO api_keys (id, name, scopes, secret_hash) VALUES ($1, $2, $3, $4)
       RETURNING ${COLUMNS}`,
      [id, name, scopes, sha256(secret).toString('hex')],
    );
    return { ...(row as KeyRecord), key: `thr_${id}_${secret}` };
  }

  /** Every key, newest first, revoked ones included; never a secret. */
  async list(): Promise<KeyRecord[]> {
    const db = await this.db();
    return db.query<KeyRecord>(`SELECT ${COLUMNS} FROM api_keys ORDER BY id DESC`);
  }

  /** Revokes a key on every node; a key revoked before stays revoked (its first time kept). */
  async revoke(id: string): Promise<KeyRecord> {
    const db = await this.db();
    const [row] = await db.query<KeyRecord>(
      `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1
       RETURNING ${COLUMNS}`,
      [id],
    );
    if (!row) throw new NotFoundError(`no API key ${id}`);
    this.forget(id);
    await this.announce(id);
    return row;
  }

  /** What a key grants, or undefined when it is unknown, revoked or wrong. */
  async check(token: string): Promise<Grant | undefined> {
    const match = KEY.exec(token);
    if (!match) return undefined;
    const [, id, secret] = match as unknown as [string, string, string];
    let entry = this.cache.get(id);
    if (!entry || this.now() - entry.at >= CACHE_MS) {
      entry = await this.load(id);
      if (!entry) return undefined;
    }
    return timingSafeEqual(sha256(secret), entry.hash) ? entry.grant : undefined;
  }

  /** A revocation heard from any node: the next check reads the database. */
  forget(id: string): void {
    this.cache.delete(id);
    if (this.revokedAt.size >= MAX_CACHED) this.revokedAt.clear();
    this.revokedAt.set(id, this.now());
  }

  private async load(id: string): Promise<Cached | undefined> {
    const started = this.now();
    const db = await this.db();
    const [row] = await db.query<{ name: string; scopes: string[]; secret_hash: string }>(
      'SELECT name, scopes, secret_hash FROM api_keys WHERE id = $1 AND revoked_at IS NULL',
      [id],
    );
    // Revoked while the row was on its way: the row is older than the news.
    if (!row || (this.revokedAt.get(id) ?? -Infinity) >= started) return undefined;
    const entry = {
      hash: Buffer.from(row.secret_hash, 'hex'),
      grant: grantOf(id, row),
      at: this.now(),
    };
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
    this.cache.set(id, entry);
    return entry;
  }
}

const COLUMNS = `id, name, scopes, created_at AS "createdAt", revoked_at AS "revokedAt"`;

function grantOf(key: string, row: { name: string; scopes: string[] }): Grant {
  if (row.scopes.includes('admin')) return { scope: 'admin', key, name: row.name };
  const rooms = row.scopes.filter((s) => s.startsWith('publish:')).map((s) => s.slice(8));
  const routes = ROUTE_SCOPES.filter((s) => row.scopes.includes(s));
  return { scope: 'scoped', key, name: row.name, rooms, routes };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
