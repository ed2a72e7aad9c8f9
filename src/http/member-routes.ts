import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { ForbiddenError, ValidationError } from '../errors.ts';
import { MemberId } from '../funnel/envelope.ts';
import { FALLBACKS } from '../config.ts';
import type { AppEnv } from './app.ts';
import { isAdmin, memberOf, type Principal } from './auth.ts';
import { memberParam, readJson } from './params.ts';

/** What the routes need of the settings (delivery/missed.ts `MissedSettings`). */
export interface MemberRoutesDeps {
  missed: {
    get(member: string): Promise<string[]>;
    set(member: string, channels: readonly string[]): Promise<string[]>;
  };
}

/** `"push,webhook,sms"` (any of them, in the order wanted, each once) or `"off"`. */
const Missed = z
  .string()
  .transform((v) => (v === 'off' ? [] : v.split(',').map((c) => c.trim())))
  .refine((cs) => cs.every((c) => FALLBACKS.includes(c)) && new Set(cs).size === cs.length, {
    message: `expected "off" or channels of ${FALLBACKS.join(', ')}, comma-separated, each once`,
  });

export const Settings = z.object({ missed: Missed.optional() }).strict();

/**
 * A member's own settings (DESIGN §5): `GET` / `PUT /v1/members/:member/settings`, for the
 * admin or the member themself (one route for both: an app reads and writes its user's with
 * the user's token, an operator's backend with the admin token). Today one setting, `missed`.
 */
export function mountMemberSettings(app: Hono<AppEnv>, deps: MemberRoutesDeps): void {
  const member = (c: Context<AppEnv>) => {
    const id = memberParam(c);
    mayChange(c.get('principal'), id);
    if (!MemberId.safeParse(id).success || !id.startsWith('user:'))
      throw new ValidationError('member: settings are for app users (user:…)', 'member');
    return id;
  };
  const view = (id: string, missed: string[]) => ({
    member: id,
    missed: missed.length > 0 ? missed.join(',') : 'off',
  });

  app.get('/v1/members/:member/settings', async (c) => {
    const id = member(c);
    return c.json(view(id, await deps.missed.get(id)));
  });

  app.put('/v1/members/:member/settings', async (c) => {
    const id = member(c);
    const body = await readJson(c, Settings);
    const missed = body.missed ?? (await deps.missed.get(id));
    if (body.missed) await deps.missed.set(id, body.missed);
    return c.json(view(id, missed));
  });
}

function mayChange(p: Principal, member: string): void {
  if (isAdmin(p) || memberOf(p) === member) return;
  throw new ForbiddenError("a member's settings are theirs and the admin's");
}
