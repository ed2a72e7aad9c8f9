import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import { sign } from 'hono/jwt';
import {
  ForbiddenError,
  InvalidCodeError,
  RateLimitedError,
  UnavailableError,
  ValidationError,
} from '../errors.ts';
import { newUlid } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { AuthDatabase, Queryable } from './database.ts';
import type { Phone, PhoneNumbers } from './phones.ts';

/** Twilio Verify's rules: a code lives 10 minutes, 5 checks, 5 sends per phone per 10 minutes. */
export const CODE_TTL_MS = 10 * 60_000;
export const MAX_CHECKS = 5;
export const MAX_SENDS = 5;
export const SEND_WINDOW_MS = 10 * 60_000;

/** Why a sign-in request was refused, as counted in `threshold_auth_refused_total{reason}`. */
export type RefusalReason =
  | 'address_limit'
  | 'hourly_limit'
  | 'phone_limit'
  | 'country'
  | 'invalid_phone'
  | 'wrong_code'
  | 'attempts';

export interface AccountsDeps {
  /** Opens (once) and gives the migrated auth database. */
  db: () => Promise<AuthDatabase>;
  phones: PhoneNumbers;
  /** How codes are texted; undefined when this node cannot send SMS at all. */
  sms: { send(sms: { to: string; from: string; body: string }): Promise<unknown> } | undefined;
  /** The HS256 secret tokens are signed with (and codes hashed with). */
  secret: () => Promise<string>;
  /** Shared limits over every node; each throws RateLimitedError when over. */
  limits: { perAddress(address: string): Promise<void>; total(): Promise<void> };
  refused(reason: RefusalReason): void;
  sent(): void;
  log: Logger;
}

export interface AccountsOptions {
  smsFrom: string;
  tokenTtlMs: number;
}

export interface StartRequest {
  phone: string;
  first?: string | undefined;
  last?: string | undefined;
}

/**
 * Sign-up and sign-in by a code texted to a phone (DESIGN §5). Every answer is the same
 * whether or not the phone has an account, so the routes tell nobody who is signed up.
 */
export class Accounts {
  constructor(
    private readonly deps: AccountsDeps,
    private readonly options: AccountsOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** Texts a new code to the phone; a pending user is created for a phone not seen before. */
  async start(
    request: StartRequest,
    address: string,
  ): Promise<{ phone: string; expiresIn: number }> {
    const { deps } = this;
    await this.counted('address_limit', () => deps.limits.perAddress(address));
    const phone = await this.counted('invalid_phone', async () => deps.phones.parse(request.phone));
    if (!deps.phones.isAllowed(phone)) {
      deps.refused('country');
      throw new ForbiddenError(
        `phone: codes are not sent to numbers of ${phone.country || 'that country'} here (auth.allowedCountries)`,
      );
    }
    if (!deps.sms)
      throw new UnavailableError(
        'this node cannot send SMS (no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN); sign-in codes cannot be sent',
      );
    await this.counted('hourly_limit', () => deps.limits.total());

    const code = randomInt(0, 1_000_000).toString().padStart(6, '0');
    const hash = this.hash(phone.e164, code, await deps.secret());
    const db = await deps.db();
    const now = this.now();
    const refusal = await db.transaction(async (tx) => {
      const row = await lockCodes(tx, phone.e164);
      const recent = row.sends.filter((t) => t > now - SEND_WINDOW_MS);
      if (recent.length >= MAX_SENDS) return Math.min(...recent) + SEND_WINDOW_MS - now;
      await tx.query(
        `UPDATE phone_codes SET code_hash = $2, expires_at = $3, failed_checks = 0, sends = $4
          WHERE phone = $1`,
        [phone.e164, hash, now + CODE_TTL_MS, [...recent, now]],
      );
      await this.ensureUser(tx, phone, request);
      return undefined;
    });
    if (refusal !== undefined) {
      deps.refused('phone_limit');
      throw new RateLimitedError(
        `at most ${MAX_SENDS} codes per phone per ${SEND_WINDOW_MS / 60_000} minutes; retry later`,
        refusal,
      );
    }
    await deps.sms.send({
      to: phone.e164,
      from: this.options.smsFrom,
      body: `Your Threshold code is ${code}. It expires in ${CODE_TTL_MS / 60_000} minutes; do not share it.`,
    });
    deps.sent();
    return { phone: phone.e164, expiresIn: CODE_TTL_MS / 1000 };
  }

  /** Checks a code; the right one (once) verifies the user and gets it a token. */
  async verify(input: { phone: string; code: string }): Promise<{ token: string; member: string }> {
    const { deps } = this;
    const phone = deps.phones.parse(input.phone);
    const secret = await deps.secret();
    const given = Buffer.from(this.hash(phone.e164, input.code, secret), 'hex');
    const db = await deps.db();
    const now = this.now();
    const outcome = await db.transaction(async (tx) => {
      const row = await lockCodes(tx, phone.e164);
      if (row.failed_checks >= MAX_CHECKS) return 'attempts' as const;
      if (row.code_hash === null || row.expires_at <= now) return 'invalid' as const;
      if (!timingSafeEqual(Buffer.from(row.code_hash, 'hex'), given)) {
        const failed = row.failed_checks + 1;
        // The fifth wrong check ends the code: even the right one no longer works.
        await tx.query(
          `UPDATE phone_codes SET failed_checks = $2, code_hash = $3 WHERE phone = $1`,
          [phone.e164, failed, failed >= MAX_CHECKS ? null : row.code_hash],
        );
        return failed >= MAX_CHECKS ? ('attempts' as const) : ('invalid' as const);
      }
      await tx.query(
        `UPDATE phone_codes SET code_hash = NULL, failed_checks = 0 WHERE phone = $1`,
        [phone.e164],
      );
      const [user] = await tx.query<{ id: string }>(
        `INSERT INTO users (id, phone, state, verified_at) VALUES ($1, $2, 'verified', now())
         ON CONFLICT (phone) DO UPDATE
           SET state = 'verified', verified_at = COALESCE(users.verified_at, now())
         RETURNING id`,
        [newUlid().toLowerCase(), phone.e164],
      );
      return { id: (user as { id: string }).id };
    });
    if (outcome === 'attempts') {
      deps.refused('attempts');
      throw new RateLimitedError(
        `${MAX_CHECKS} wrong codes: this code is void; ask for a new one`,
        1000,
        'too_many_attempts',
      );
    }
    if (outcome === 'invalid') {
      deps.refused('wrong_code');
      throw new InvalidCodeError();
    }
    const member = `user:${outcome.id}`;
    const iat = Math.floor(now / 1000);
    const exp = iat + Math.round(this.options.tokenTtlMs / 1000);
    return { token: await sign({ sub: member, iat, exp }, secret, 'HS256'), member };
  }

  /** A user's record by id (the `<id>` of `user:<id>`), or undefined. */
  async user(id: string): Promise<User | undefined> {
    const db = await this.deps.db();
    const [row] = await db.query<User>(
      `SELECT id, first, last, phone, state, created_at AS "createdAt", verified_at AS "verifiedAt"
         FROM users WHERE id = $1`,
      [id],
    );
    return row;
  }

  /** A new user is pending; the names given at start fill a record nobody has verified yet. */
  private async ensureUser(tx: Queryable, phone: Phone, request: StartRequest) {
    await tx.query(
      `INSERT INTO users (id, first, last, phone) VALUES ($1, $2, $3, $4)
       ON CONFLICT (phone) DO UPDATE
         SET first = CASE WHEN users.state = 'pending' AND $5 THEN EXCLUDED.first ELSE users.first END,
             last = CASE WHEN users.state = 'pending' AND $5 THEN EXCLUDED.last ELSE users.last END`,
      [
        newUlid().toLowerCase(),
        request.first ?? '',
        request.last ?? '',
        phone.e164,
        request.first !== undefined || request.last !== undefined,
      ],
    );
  }

  private hash(phone: string, code: string, secret: string): string {
    return createHmac('sha256', secret).update(`${phone}:${code}`).digest('hex');
  }

  private async counted<T>(reason: RefusalReason, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RateLimitedError || err instanceof ValidationError)
        this.deps.refused(reason);
      throw err;
    }
  }
}

export interface User {
  id: string;
  first: string;
  last: string;
  phone: string;
  state: 'pending' | 'verified';
  createdAt: Date;
  verifiedAt: Date | null;
}

interface CodeRow {
  code_hash: string | null;
  expires_at: number;
  failed_checks: number;
  sends: number[];
}

/** The phone's code row, created if missing and locked for the rest of the transaction. */
async function lockCodes(tx: Queryable, phone: string): Promise<CodeRow> {
  await tx.query('INSERT INTO phone_codes (phone) VALUES ($1) ON CONFLICT (phone) DO NOTHING', [
    phone,
  ]);
  const [row] = await tx.query<CodeRow>(
    `SELECT code_hash, expires_at, failed_checks, sends FROM phone_codes WHERE phone = $1 FOR UPDATE`,
    [phone],
  );
  const r = row as CodeRow;
  return { ...r, expires_at: Number(r.expires_at), sends: (r.sends ?? []).map(Number) };
}

/**
 * The JWT secret of a deployment that sets none: generated once, kept in the auth database
 * (so it survives restarts, and nodes sharing a Postgres share it).
 */
export async function storedSecret(db: AuthDatabase): Promise<string> {
  await db.query(
    `INSERT INTO auth_settings (name, value) VALUES ('jwt_secret', $1) ON CONFLICT (name) DO NOTHING`,
    [randomBytes(32).toString('base64url')],
  );
  const [row] = await db.query<{ value: string }>(
    `SELECT value FROM auth_settings WHERE name = 'jwt_secret'`,
  );
  return (row as { value: string }).value;
}
