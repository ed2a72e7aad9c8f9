import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { ForbiddenError, ValidationError } from '../errors.ts';
import type { AppEnv } from './app.ts';
import { memberOf } from './auth.ts';
import { Name } from './auth-routes.ts';
import { intQuery, readJson } from './params.ts';

/** What an invite looks like to these routes: they pass it on as it is. */
type InviteAnswer = { id: string; state: string };

/** What the routes need of the invites (src/auth/invites.ts): consumer-owned, so tests can fake it. */
export interface InviteRoutesDeps {
  invites: {
    create(
      inviter: string,
      request: { phone: string; first?: string | undefined; last?: string | undefined },
    ): Promise<{ invite: InviteAnswer; created: boolean }>;
    list(member: string, role: 'received' | 'sent', limit: number): Promise<InviteAnswer[]>;
    get(member: string, id: string): Promise<InviteAnswer>;
    accept(member: string, id: string): Promise<InviteAnswer>;
    reject(member: string, id: string): Promise<InviteAnswer>;
    cancel(member: string, id: string): Promise<InviteAnswer>;
    ack(member: string, id: string): Promise<InviteAnswer>;
    connections(member: string, limit: number): Promise<unknown[]>;
  };
}

export const InviteBody = z
  .object({ phone: z.string().min(1).max(40), first: Name.optional(), last: Name.optional() })
  .strict();

const MAX_PAGE = 100;

/**
 * Invites and connections (DESIGN §5), for members only: `POST /v1/invites`, the lists
 * `GET /v1/invites?role=received|sent`, one invite by id and what either party does with it,
 * and `GET /v1/me/connections`.
 */
export function mountInvites(app: Hono<AppEnv>, deps: InviteRoutesDeps): void {
  const { invites } = deps;

  app.post('/v1/invites', async (c) => {
    const member = actingMember(c);
    const body = await readJson(c, InviteBody);
    const { invite, created } = await invites.create(member, body);
    return c.json(invite, created ? 201 : 200);
  });

  app.get('/v1/invites', async (c) => {
    const member = actingMember(c);
    const role = c.req.query('role') || 'received';
    if (role !== 'received' && role !== 'sent')
      throw new ValidationError('role: expected received or sent', 'role');
    const limit = intQuery(c, 'limit', 50, 1, MAX_PAGE);
    return c.json({ role, invites: await invites.list(member, role, limit) });
  });

  app.get('/v1/invites/:id', async (c) => c.json(await invites.get(actingMember(c), idOf(c))));
  app.post('/v1/invites/:id/accept', async (c) =>
    c.json(await invites.accept(actingMember(c), idOf(c))),
  );
  app.post('/v1/invites/:id/reject', async (c) =>
    c.json(await invites.reject(actingMember(c), idOf(c))),
  );
  app.post('/v1/invites/:id/ack', async (c) => c.json(await invites.ack(actingMember(c), idOf(c))));
  app.delete('/v1/invites/:id', async (c) =>
    c.json(await invites.cancel(actingMember(c), idOf(c))),
  );

  app.get('/v1/me/connections', async (c) => {
    const member = actingMember(c);
    const limit = intQuery(c, 'limit', 100, 1, 1000);
    return c.json({ connections: await invites.connections(member, limit) });
  });
}

/** The member a request acts as; the admin token invites nobody and has no connections. */
function actingMember(c: Context<AppEnv>): string {
  const member = memberOf(c.get('principal'));
  if (member) return member;
  throw new ForbiddenError(
    "invites and connections belong to a member: use a member's token, not the admin token or an API key",
  );
}

/** The `:id` as given; the service answers 404 for one that is not an invite of the caller's. */
function idOf(c: Context<AppEnv>): string {
  return c.req.param('id') ?? '';
}
