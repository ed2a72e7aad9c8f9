import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../errors.ts';
import {
  secretProblem,
  WEBHOOK_NAME,
  type WebhookEndpoint,
  type WebhookEndpoints,
} from '../delivery/webhook-endpoints.ts';
import type { AppEnv } from './app.ts';
import { readJson } from './params.ts';
import { requireAdmin } from './auth.ts';

export interface WebhookRoutesDeps {
  endpoints: Pick<WebhookEndpoints, 'put' | 'get' | 'delete'>;
}

export const PutBody = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).max(2048),
    secret: z
      .string()
      .superRefine((secret, ctx) => {
        const problem = secretProblem(secret);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
  })
  .strict();

/**
 * The admin API of webhook endpoints: `PUT`, `GET` and `DELETE /v1/webhooks/:name`. Mounted
 * on the app built by `createApp`, so its auth, body limit and error handling apply.
 */
export function mountWebhooks(app: Hono<AppEnv>, { endpoints }: WebhookRoutesDeps): void {
  app.put('/v1/webhooks/:name', async (c) => {
    requireAdmin(c.get('principal'));
    const name = nameParam(c);
    const body = await readJson(c, PutBody);
    const { created, endpoint, secret } = await endpoints.put(name, body);
    // The secret only when it was generated here: it cannot be read back later.
    return c.json(
      { name, url: endpoint.url, disabled: endpoint.disabled, ...(secret ? { secret } : {}) },
      created ? 201 : 200,
    );
  });

  app.get('/v1/webhooks/:name', async (c) => {
    requireAdmin(c.get('principal'));
    const name = nameParam(c);
    const endpoint = await endpoints.get(name);
    if (!endpoint) throw new NotFoundError(`webhook endpoint ${name} does not exist`);
    return c.json(shown(endpoint));
  });

  app.delete('/v1/webhooks/:name', async (c) => {
    requireAdmin(c.get('principal'));
    const name = nameParam(c);
    if (!(await endpoints.delete(name)))
      throw new NotFoundError(`webhook endpoint ${name} does not exist`);
    return c.body(null, 204);
  });
}

function shown(e: WebhookEndpoint) {
  return {
    name: e.name,
    url: e.url,
    disabled: e.disabled,
    ...(e.disabledReason !== undefined ? { disabledReason: e.disabledReason } : {}),
    ...(e.disabledAt !== undefined ? { disabledAt: e.disabledAt } : {}),
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  };
}

function nameParam(c: Context<AppEnv>): string {
  const name = c.req.param('name') ?? '';
  if (!WEBHOOK_NAME.test(name)) {
    throw new ValidationError(
      'name: expected 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit',
      'name',
    );
  }
  return name;
}
