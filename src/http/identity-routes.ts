import type { Hono } from 'hono';
import type { AppEnv } from './app.ts';
import { type AccountRoutesDeps, mountAccounts } from './auth-routes.ts';
import { type InviteRoutesDeps, mountInvites } from './invite-routes.ts';
import { type KeyRoutesDeps, mountKeys } from './key-routes.ts';

/** The identity routes (DESIGN §5): accounts, API keys, invites and connections. */
export function mountIdentity(
  app: Hono<AppEnv>,
  deps: AccountRoutesDeps & KeyRoutesDeps & InviteRoutesDeps,
): void {
  mountAccounts(app, deps);
  mountKeys(app, deps);
  mountInvites(app, deps);
}
