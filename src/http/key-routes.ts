import type { Hono } from 'hono';
import { NotFoundError } from '../errors.ts';
import { NewKey } from '../auth/api-keys.ts';
import type { AppEnv } from './app.ts';
import { requireAdmin } from './auth.ts';
import { readJson } from './params.ts';

interface KeyRecord {
  id: string;
  name: string;
  scopes: string[];
  createdAt: Date;
  revokedAt: Date | null;
}

/** What the key routes need of the API keys (src/auth/api-keys.ts). */
export interface KeyRoutesDeps {
  apiKeys: {
    create(name: string, scopes: readonly string[]): Promise<KeyRecord & { key: string }>;
    list(): Promise<KeyRecord[]>;
    revoke(id: string): Promise<KeyRecord>;
  };
}

const KEY_ID = /^[0-9a-z]{26}$/;

/** API keys (DESIGN §5): the admin creates, lists and revokes them. */
export function mountKeys(app: Hono<AppEnv>, { apiKeys }: KeyRoutesDeps): void {
  app.post('/v1/keys', async (c) => {
    requireAdmin(c.get('principal'));
    const { name, scopes } = await readJson(c, NewKey);
    return c.json(await apiKeys.create(name, [...new Set(scopes)]), 201);
  });

  app.get('/v1/keys', async (c) => {
    requireAdmin(c.get('principal'));
    return c.json({ keys: await apiKeys.list() });
  });

  app.delete('/v1/keys/:id', async (c) => {
    requireAdmin(c.get('principal'));
    const id = c.req.param('id');
    if (!KEY_ID.test(id)) throw new NotFoundError(`no API key ${id.slice(0, 64)}`);
    await apiKeys.revoke(id);
    return c.body(null, 204);
  });
}
