import { resolve } from 'node:path';
import type { Config } from '../config.ts';
import { type DataDirLock, lockDataDir } from '../data-dir-lock.ts';
import { list } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import { hourlyLimiter } from '../ingress/rate-limit.ts';
import { ConflictError } from '../errors.ts';
import { Accounts, storedSecret } from './accounts.ts';
import { ApiKeys } from './api-keys.ts';
import { type AuthDatabase, openAuthDatabase } from './database.ts';
import { Invites } from './invites.ts';
import { migrate } from './migrations.ts';
import { PhoneNumbers } from './phones.ts';
import { TokenRevocations } from './revocations.ts';

/** Where codes come from in SMS development mode when `auth.smsFrom` is empty (a Twilio test number). */
export const DEV_SMS_FROM = '+15005550006';

export interface AuthServiceDeps {
  redis: RedisClient;
  keys: Keys;
  metrics: Metrics;
  log: Logger;
  /** The node's SMS client (`smsClientFor`); `dev` set when it is development mode's. */
  sms: { client: CodeSender | undefined; dev?: unknown };
  /** Where an accepted invite's room is made (the rooms store). */
  rooms: {
    create(room: { id: string }): Promise<unknown>;
    addMember(room: string, member: string): Promise<unknown>;
  };
  /** Frames for a member's WebSockets on any node (MemberNotices). */
  notices: { notify(member: string, frame: string): Promise<void> };
}

type CodeSender = { send(sms: { to: string; from: string; body: string }): Promise<unknown> };

/**
 * The accounts side of a node: the auth database (opened at start with a Postgres URL; the
 * embedded one when first needed, so a node nobody signs in to never starts it), the
 * accounts, invites and connections, logout-all, and the JWT secret when the config has none.
 */
export function createAuthService(
  config: Pick<Config, 'databaseUrl' | 'dataDir' | 'jwtSecret' | 'auth' | 'invites'>,
  deps: AuthServiceDeps,
) {
  const { log, metrics } = deps;
  let opening: Promise<AuthDatabase> | undefined;
  let lock: DataDirLock | undefined;
  const db = () =>
    (opening ??= (async () => {
      // PGlite is one process's: a second node on the same files would corrupt them.
      if (!config.databaseUrl) lock = lockDataDir(resolve(config.dataDir, 'auth'), 'node');
      const opened = await openAuthDatabase(
        { url: config.databaseUrl, dataDir: config.dataDir },
        log,
      );
      try {
        await migrate(opened, log);
      } catch (err) {
        await opened.close().catch(() => {});
        throw err;
      }
      return opened;
    })().catch((err: unknown) => {
      opening = undefined;
      lock?.release();
      throw err;
    }));
  let secret: Promise<string> | undefined;
  const storedJwtSecret = () =>
    (secret ??= db()
      .then(storedSecret)
      .catch((err: unknown) => {
        secret = undefined;
        throw err;
      }));
  const jwtSecret = config.jwtSecret || storedJwtSecret;

  const from = config.auth.smsFrom || (deps.sms.dev ? DEV_SMS_FROM : '');
  const perAddress = hourlyLimiter(deps, 'auth_start', config.auth.startsPerAddressPerHour);
  const total = hourlyLimiter(deps, 'auth_start_total', config.auth.startsPerHour);
  const phones = new PhoneNumbers({
    defaultRegion: config.auth.defaultRegion,
    allowedCountries: list(config.auth.allowedCountries),
  });
  const sms = from ? deps.sms.client : undefined;
  const accounts = new Accounts(
    {
      db,
      phones,
      sms,
      secret: typeof jwtSecret === 'string' ? async () => jwtSecret : jwtSecret,
      limits: {
        perAddress: (address) => perAddress.take(address || 'unknown'),
        total: () => total.take('all'),
      },
      refused: (reason) => metrics.authRefused.inc({ reason }),
      sent: () => metrics.authCodesSent.inc(),
      log,
    },
    { smsFrom: from, tokenTtlMs: config.auth.tokenTtlHours * 3_600_000 },
  );
  const invitesPerMember = hourlyLimiter(deps, 'invite', config.invites.perHour);
  const invites = new Invites(
    {
      db,
      phones,
      sms,
      rooms: {
        // The room id comes from the invite: a retried accept finds its room and finishes it.
        async openPair(room, members) {
          await deps.rooms.create({ id: room }).catch((err: unknown) => {
            if (!(err instanceof ConflictError)) throw err;
          });
          for (const m of members) await deps.rooms.addMember(room, m);
        },
      },
      notices: deps.notices,
      limit: (member) => invitesPerMember.take(member),
      log,
    },
    {
      smsFrom: from,
      linkUrl: config.invites.linkUrl,
      maxConnections: config.invites.maxConnections,
    },
  );
  const revocations = new TokenRevocations(deps.redis, deps.keys, {
    keepMs: Math.round(config.auth.tokenTtlHours * 3_600_000),
  });
  const keyRevoked = deps.keys.keyRevokedChannel;
  const apiKeys = new ApiKeys(db, (id) => deps.redis.publish(keyRevoked, id));
  return {
    name: 'auth database',
    accounts,
    invites,
    revocations,
    apiKeys,
    /** What the token check needs: the secret, who logged out everywhere, the API keys. */
    tokens: { jwtSecret, revocations, apiKeys },
    /**
     * Hears revocations from every node (`listen`: the node's subscriber): logout-all and
     * revoked keys are forgotten at once, and `sockets` closes their open WebSockets.
     */
    async listen(
      listen: (channel: string, handler: (payload: string) => void) => Promise<unknown>,
      sockets: { closeMember(member: string, before: number): void; closeKey(id: string): void },
    ) {
      await revocations.listen(listen, (member, before) => sockets.closeMember(member, before));
      await listen(keyRevoked, (id) => {
        apiKeys.forget(id);
        sockets.closeKey(id);
      });
    },
    db,
    /** A Postgres is opened and migrated at start: a wrong URL stops the node there. */
    async start() {
      if (config.databaseUrl) await db();
    },
    async stop() {
      const open = opening;
      opening = undefined;
      if (open) await (await open.catch(() => undefined))?.close();
      lock?.release();
    },
  };
}
