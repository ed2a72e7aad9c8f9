import type { Hono } from 'hono';
import { z } from 'zod';
import { ValidationError } from '../errors.ts';
import type { DeadLetters } from '../funnel/dead-letters.ts';
import type { AppEnv } from './app.ts';
import { requireAdmin } from './auth.ts';

/** A stream entry id, `<ms>-<seq>`. */
export const DeadLetterId = z
  .string()
  .regex(/^\d{1,16}-\d{1,16}$/, 'expected a stream entry id such as 1733480000000-0');

/** `GET /v1/dead-letters` query: a page of the newest, or of those before a cursor. */
export const DeadLetterQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  before: DeadLetterId.optional(),
});

/** The dead letters (`thr:dead`): list them, requeue one (admin). */
export function mountDeadLetters(app: Hono<AppEnv>, deadLetters: DeadLetters): void {
  app.get('/v1/dead-letters', async (c) => {
    requireAdmin(c.get('principal'));
    const parsed = DeadLetterQuery.safeParse(c.req.query());
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field =
        (issue?.code === 'unrecognized_keys' ? issue.keys[0] : issue?.path.join('.')) ?? '';
      throw new ValidationError(`${field}: ${issue?.message ?? 'invalid'}`, field);
    }
    return c.json(await deadLetters.list(parsed.data.limit, parsed.data.before));
  });
  app.post('/v1/dead-letters/:id/requeue', async (c) => {
    requireAdmin(c.get('principal'));
    const id = DeadLetterId.safeParse(c.req.param('id'));
    if (!id.success) throw new ValidationError(`id: ${id.error.issues[0]?.message}`, 'id');
    return c.json(await deadLetters.requeue(id.data));
  });
}
