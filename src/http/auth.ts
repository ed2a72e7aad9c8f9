import { createHash, timingSafeEqual, webcrypto } from 'node:crypto';
import { verify } from 'hono/jwt';
import { ForbiddenError, UnauthorizedError } from '../errors.ts';
import { type Grant, isApiKey, type RouteScope } from '../auth/api-keys.ts';
import { MEMBER_ID } from '../funnel/envelope.ts';

export interface AuthOptions {
  adminToken: string;
  /** Empty: no client tokens; a function: looked up when first needed (the auth database's). */
  jwtSecret: string | (() => Promise<string>);
  /** No secrets configured, loopback only: every request is trusted (DESIGN §5). */
  devMode: boolean;
  /** Logout-all: a member's tokens issued before this time (ms) are void. */
  revocations?: { revokedBefore(member: string): Promise<number | undefined> } | undefined;
  /** API keys (`thr_…`): what a key grants, undefined when unknown or revoked. */
  apiKeys?: { check(key: string): Promise<Grant | undefined> } | undefined;
}

export type Principal =
  /** The admin token, or an API key with the `admin` scope (`key` is its id). */
  | { kind: 'admin'; key?: string }
  /**
   * An API key with scopes other than admin: publishes to the rooms of its `publish:<room>`
   * scopes (as the service `name`), and reaches the routes of its route scopes (`tags`…).
   */
  | {
      kind: 'key';
      key: string;
      name: string;
      rooms: readonly string[];
      routes: readonly RouteScope[];
    }
  /** Open development mode: acts as admin, or as the member it names. */
  | { kind: 'dev'; member?: string | undefined }
  | { kind: 'member'; member: string };

/**
 * Who a request is: the admin token, a client JWT (HS256, `sub` = member id) or, in open
 * development mode, anyone. Credentials come from `Authorization: Bearer …` or, for
 * WebSocket upgrades where browsers cannot set headers, `?token=`.
 */
export class Auth {
  private readonly adminDigest: Buffer | undefined;
  /**
   * The JWT secret imported as a WebCrypto key, once per secret: hono imports a string secret
   * on every verify, which cost about as much as the verify itself (a connect storm verifies
   * one token per connection).
   */
  private jwtKey: { secret: string; key: Promise<webcrypto.CryptoKey> } | undefined;

  constructor(private readonly options: AuthOptions) {
    this.adminDigest = options.adminToken ? digest(options.adminToken) : undefined;
  }

  async principal(token: string | undefined, devMember?: string): Promise<Principal> {
    if (this.options.devMode && !token) {
      if (devMember !== undefined && !MEMBER_ID.test(devMember)) {
        throw new UnauthorizedError('member must be a member id such as user:alice');
      }
      return { kind: 'dev', member: devMember };
    }
    if (!token)
      throw new UnauthorizedError('missing credentials: send Authorization: Bearer <token>');
    // Compare digests so the comparison takes the same time whatever the token's length.
    if (this.adminDigest && timingSafeEqual(digest(token), this.adminDigest))
      return { kind: 'admin' };
    if (isApiKey(token)) {
      const grant = await this.options.apiKeys?.check(token);
      if (!grant) throw new UnauthorizedError('invalid API key: unknown or revoked');
      return grant.scope === 'admin'
        ? { kind: 'admin', key: grant.key }
        : {
            kind: 'key',
            key: grant.key,
            name: grant.name,
            rooms: grant.rooms,
            routes: grant.routes,
          };
    }
    const { jwtSecret } = this.options;
    const secret = typeof jwtSecret === 'string' ? jwtSecret : await jwtSecret();
    if (!secret) throw new UnauthorizedError('invalid token');
    let sub: unknown;
    let iat: unknown;
    try {
      ({ sub, iat } = await verify(token, await this.keyOf(secret), 'HS256'));
    } catch (err) {
      // hono's messages quote the token itself; never echo credentials back.
      throw new UnauthorizedError(
        `invalid token: ${JWT_ERRORS[(err as Error).name] ?? 'not a valid HS256 JWT'}`,
      );
    }
    if (typeof sub !== 'string' || !MEMBER_ID.test(sub)) {
      throw new UnauthorizedError('token sub must be a member id such as user:alice');
    }
    const before = await this.options.revocations?.revokedBefore(sub);
    // iat is in whole seconds: a token of the same second as the logout is void too.
    if (before !== undefined && (typeof iat !== 'number' || iat * 1000 < before))
      throw new UnauthorizedError('invalid token: revoked (logout-all)');
    return { kind: 'member', member: sub };
  }

  private keyOf(secret: string): Promise<webcrypto.CryptoKey> {
    if (this.jwtKey?.secret !== secret) {
      const algorithm = { name: 'HMAC', hash: 'SHA-256' };
      const raw = new TextEncoder().encode(secret);
      const key = webcrypto.subtle.importKey('raw', raw, algorithm, false, ['verify']);
      this.jwtKey = { secret, key };
    }
    return this.jwtKey.key;
  }
}

/** The member a principal acts as: a client token's, or the one open development mode names. */
export function memberOf(p: Principal): string | undefined {
  return p.kind === 'member' || p.kind === 'dev' ? p.member : undefined;
}

export function isAdmin(p: Principal): boolean {
  return p.kind === 'admin' || p.kind === 'dev';
}

export function requireAdmin(p: Principal): void {
  if (!isAdmin(p)) throw new ForbiddenError('this route takes the admin token or an admin key');
}

/** The admin, or a key with the scope of these routes (`tags`, `notify`). */
export function requireScope(p: Principal, scope: RouteScope): void {
  if (isAdmin(p) || (p.kind === 'key' && p.routes.includes(scope))) return;
  throw new ForbiddenError(
    `this route takes the admin token or an API key with the ${scope} scope`,
  );
}

/** The bearer token of an Authorization header, if any. */
export function bearer(header: string | undefined): string | undefined {
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

/**
 * The token a WebSocket client offers as the subprotocol `bearer.<base64url of the token>`
 * (beside the one the server picks, `threshold`), as browsers set no headers on an upgrade.
 */
export function protocolBearer(header: string | undefined): string | undefined {
  const offered = header?.split(',').map((p) => p.trim());
  const encoded = offered?.find((p) => p.startsWith('bearer.'))?.slice('bearer.'.length);
  return encoded ? Buffer.from(encoded, 'base64url').toString('utf8') || undefined : undefined;
}

const JWT_ERRORS: Record<string, string> = {
  JwtTokenExpired: 'expired',
  JwtTokenNotBefore: 'not valid yet (nbf)',
  JwtTokenIssuedAt: 'issued in the future (iat)',
  JwtTokenSignatureMismatched: 'signature does not match',
  JwtAlgorithmNotImplemented: 'algorithm not supported (HS256 only)',
  JwtAlgorithmMismatch: 'algorithm not supported (HS256 only)',
  JwtTokenInvalid: 'malformed',
  JwtHeaderInvalid: 'malformed header',
};

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
