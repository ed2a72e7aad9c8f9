import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { ForbiddenError } from '../errors.ts';
import type { AppEnv } from './app.ts';
import { memberOf } from './auth.ts';
import { readJson } from './params.ts';

/** Routes anyone may call: they are how a client gets its first token. */
export const PUBLIC_AUTH_PATHS: readonly string[] = [
  '/v1/auth/phone/start',
  '/v1/auth/phone/verify',
];

/** What the routes need of the accounts (src/auth): consumer-owned, so tests can fake it. */
export interface AccountRoutesDeps {
  accounts: {
    start(
      request: { phone: string; first?: string | undefined; last?: string | undefined },
      address: string,
    ): Promise<{ phone: string; expiresIn: number }>;
    verify(request: { phone: string; code: string }): Promise<{ token: string; member: string }>;
  };
  revocations: { revokeAll(member: string): Promise<number> };
}

// No control characters in names: they end up in texts and on other people's screens.
export const Name = z
  .string()
  .regex(/^[^\p{Cc}]{1,100}$/u, '1-100 characters, no control characters');

export const StartBody = z
  .object({ phone: z.string().min(1).max(40), first: Name.optional(), last: Name.optional() })
  .strict();
export const VerifyBody = z
  .object({ phone: z.string().min(1).max(40), code: z.string().min(1).max(16) })
  .strict();

/** Accounts (DESIGN §5): sign-up and sign-in by a code texted to the phone, and logout-all. */
export function mountAccounts(app: Hono<AppEnv>, deps: AccountRoutesDeps): void {
  app.post('/v1/auth/phone/start', async (c) => {
    const body = await readJson(c, StartBody);
    return c.json(await deps.accounts.start(body, clientAddress(c)), 202);
  });

  app.post('/v1/auth/phone/verify', async (c) => {
    const body = await readJson(c, VerifyBody);
    return c.json(await deps.accounts.verify(body));
  });

  app.post('/v1/auth/logout-all', async (c) => {
    const member = memberOf(c.get('principal'));
    if (!member) throw new ForbiddenError("logout-all belongs to a member: use the member's token");
    const before = await deps.revocations.revokeAll(member);
    return c.json({ member, revokedBefore: before });
  });
}

/** The peer's address (no proxy header is trusted: anyone could send one). */
function clientAddress(c: Context): string {
  try {
    return getConnInfo(c).remote.address ?? '';
  } catch {
    return '';
  }
}
