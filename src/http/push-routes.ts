import { ECDH } from 'node:crypto';
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../errors.ts';
import type { PushSubscription } from '../delivery/push-subscriptions.ts';
import type { AppEnv } from './app.ts';
import { memberOf } from './auth.ts';
import { readJson } from './params.ts';

/** Routes that take no credentials: browsers fetch the key before anyone signs in. */
export const PUBLIC_PUSH_PATHS: readonly string[] = ['/v1/push/key'];

/** What the routes need (the outbox's `push`): consumer-owned, so tests can fake it. */
export interface PushRoutesDeps {
  subscriptions: {
    put(
      member: string,
      sub: Omit<PushSubscription, 'addedAt'>,
    ): Promise<'created' | 'replaced' | 'full'>;
    list(member: string): Promise<PushSubscription[]>;
    remove(member: string, endpoint: string): Promise<boolean>;
  };
  vapid: { publicKey: string };
}

/** Plain http only to this machine (a local push service in tests and development). */
const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]'];

const Endpoint = z
  .string()
  .max(2048)
  .refine(
    (v) => {
      if (!URL.canParse(v)) return false;
      const url = new URL(v);
      return (
        url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK.includes(url.hostname))
      );
    },
    { message: 'expected an https URL (http only on 127.0.0.1 or localhost)' },
  );

/** base64url (padding tolerated) that decodes to `bytes` bytes, checked further by `valid`. */
const base64url = (bytes: number, what: string, valid: (b: Buffer) => boolean = () => true) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_-]+={0,2}$/, 'expected base64url')
    .refine((v) => Buffer.from(v, 'base64url').length === bytes, {
      message: `expected base64url of ${bytes} bytes (${what})`,
    })
    .refine((v) => valid(Buffer.from(v, 'base64url')), { message: `not ${what}` });

const onCurve = (b: Buffer) => {
  try {
    ECDH.convertKey(b, 'prime256v1');
    return b[0] === 4;
  } catch {
    return false;
  }
};

/** A browser's `PushSubscription.toJSON()`; its `expirationTime` is accepted and ignored. */
export const PutBody = z
  .object({
    endpoint: Endpoint,
    keys: z
      .object({
        p256dh: base64url(65, 'an uncompressed P-256 public key', onCurve),
        auth: base64url(16, 'the auth secret'),
      })
      .strict(),
    expirationTime: z.number().nullable().optional(),
  })
  .strict();

/**
 * Web Push: `GET /v1/push/key` (the VAPID public key, no credentials) and a member's own
 * subscriptions, `PUT`, `GET` and `DELETE /v1/me/push`.
 */
export function mountPush(app: Hono<AppEnv>, { subscriptions, vapid }: PushRoutesDeps): void {
  app.get('/v1/push/key', (c) => c.json({ publicKey: vapid.publicKey }));

  app.put('/v1/me/push', async (c) => {
    const member = self(c);
    const { endpoint, keys } = await readJson(c, PutBody);
    const result = await subscriptions.put(member, { endpoint, ...keys });
    if (result === 'full')
      throw new ConflictError(
        `${member} has as many push subscriptions as push.maxSubscriptionsPerMember allows: DELETE one first`,
      );
    return c.json({ endpoint }, result === 'created' ? 201 : 200);
  });

  app.get('/v1/me/push', async (c) => {
    const subs = await subscriptions.list(self(c));
    return c.json({
      subscriptions: subs.map(({ endpoint, addedAt }) => ({ endpoint, addedAt })),
    });
  });

  app.delete('/v1/me/push', async (c) => {
    const member = self(c);
    const endpoint = c.req.query('endpoint');
    if (!endpoint) throw new ValidationError('endpoint: expected ?endpoint=<url>', 'endpoint');
    if (!(await subscriptions.remove(member, endpoint)))
      throw new NotFoundError(`${member} has no push subscription ${endpoint}`);
    return c.body(null, 204);
  });
}

function self(c: Context<AppEnv>): string {
  const member = memberOf(c.get('principal'));
  if (!member)
    throw new ForbiddenError("push subscriptions are a member's own: use a member token");
  return member;
}
