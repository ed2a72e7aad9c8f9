import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { E164, RecipientId, RoomId } from '../funnel/envelope.ts';
import type { MemberLinks } from '../delivery/member-settings.ts';
import type { NewNotification, Priority } from '../notify/notifications.ts';
import { PRIORITIES } from '../notify/notifications.ts';
import { FALLBACKS } from '../config.ts';
import type { AppEnv } from './app.ts';
import { type Principal, requireScope } from './auth.ts';
import { memberParam, readJson } from './params.ts';

/** What the notification routes need (src/notify). */
export interface NotificationRoutesDeps {
  notifications: {
    create(n: NewNotification): Promise<{ id: string; status: string }>;
    status(id: string): Promise<unknown>;
    cancel(id: string): Promise<void>;
    prioritise(id: string, priority: Priority): Promise<void>;
  };
  /** Checks a tag expression: a 400 naming where it is wrong or which tag is unknown. */
  tags: { validate(expression: string): Promise<void> };
  links: {
    links(member: string): Promise<MemberLinks>;
    setLinks(
      member: string,
      links: { [K in keyof MemberLinks]?: string | null },
    ): Promise<MemberLinks>;
  };
  options: {
    maxBodyChars: number;
    maxMembers: number;
    maxScheduleDays: number;
    /** The fallback of a notification that names none. */
    channels: string[];
  };
}

/** A time: ms since epoch, or an ISO 8601 date-time. */
const Time = z.union([
  z.number().int().min(0),
  z.iso.datetime({ offset: true }).transform((s) => Date.parse(s)),
]);

export const NewBody = z
  .object({
    to: z
      .object({
        members: z.array(RecipientId).min(1).optional(),
        rooms: z.array(RoomId).min(1).max(100).optional(),
        tags: z.string().min(1).max(1000).optional(),
      })
      .strict()
      .refine((to) => to.members || to.rooms || to.tags, {
        message: 'expected members, rooms or tags',
      }),
    body: z.string().min(1, 'must not be empty'),
    data: z.record(z.string(), z.unknown()).optional(),
    priority: z.enum(PRIORITIES).default('normal'),
    sendAt: Time.optional(),
    expiresAt: Time.optional(),
    ttlSeconds: z.number().int().min(1).optional(),
    channels: z
      .array(z.enum(FALLBACKS as [string, ...string[]]))
      .max(3)
      .optional(),
  })
  .strict();

export const PriorityBody = z.object({ priority: z.enum(PRIORITIES) }).strict();

export const Links = z
  .object({
    phone: z.string().regex(E164, 'expected an E.164 number').nullable().optional(),
    webhook: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'expected a webhook endpoint name')
      .nullable()
      .optional(),
  })
  .strict();

const NOTIFICATION_ID = /^[0-9a-z]{26}$/;

/** Notifications (DESIGN §5): create, read the status, cancel, re-prioritise; links. */
export function mountNotifications(app: Hono<AppEnv>, deps: NotificationRoutesDeps): void {
  const { notifications, options } = deps;
  const notify = (principal: Principal) => requireScope(principal, 'notify');
  const idOf = (id: string) => {
    if (!NOTIFICATION_ID.test(id)) throw new ValidationError('id: not a notification id', 'id');
    return id;
  };

  app.post('/v1/notifications', async (c) => {
    const principal = c.get('principal');
    notify(principal);
    const body = await readJson(c, NewBody);
    const now = Date.now();
    if (body.body.length > options.maxBodyChars)
      throw new ValidationError(`body: longer than ${options.maxBodyChars} characters`, 'body');
    if ((body.to.members?.length ?? 0) > options.maxMembers)
      throw new ValidationError(
        `to.members: at most ${options.maxMembers} (notifications.maxMembers); use tags for more`,
        'to.members',
      );
    const sendAt = Math.max(body.sendAt ?? now, now);
    if (sendAt > now + options.maxScheduleDays * 86_400_000)
      throw new ValidationError(
        `sendAt: at most ${options.maxScheduleDays} days ahead (notifications.maxScheduleDays)`,
        'sendAt',
      );
    if (body.expiresAt !== undefined && body.ttlSeconds !== undefined)
      throw new ValidationError('expiresAt, ttlSeconds: one or the other, not both', 'ttlSeconds');
    const expiresAt =
      body.ttlSeconds !== undefined ? sendAt + body.ttlSeconds * 1000 : body.expiresAt;
    if (expiresAt !== undefined && expiresAt <= sendAt)
      throw new ValidationError('expiresAt: must be after sendAt', 'expiresAt');
    if (body.to.tags !== undefined) await deps.tags.validate(body.to.tags);
    const to = {
      ...body.to,
      ...(body.to.members ? { members: [...new Set(body.to.members)] } : {}),
    };
    const created = await notifications.create({
      to,
      body: body.body,
      data: body.data,
      priority: body.priority,
      sendAt,
      expiresAt,
      channels: body.channels ?? options.channels,
      sender: principal.kind === 'key' ? principal.name : 'admin',
    });
    return c.json(created, 202);
  });

  app.get('/v1/notifications/:id', async (c) => {
    notify(c.get('principal'));
    return c.json(await notifications.status(idOf(c.req.param('id'))));
  });

  app.delete('/v1/notifications/:id', async (c) => {
    notify(c.get('principal'));
    await notifications.cancel(idOf(c.req.param('id')));
    return c.body(null, 204);
  });

  app.patch('/v1/notifications/:id', async (c) => {
    notify(c.get('principal'));
    const id = idOf(c.req.param('id'));
    const { priority } = await readJson(c, PriorityBody);
    await notifications.prioritise(id, priority);
    return c.json(await notifications.status(id));
  });

  /** Links are for app users: the others have their own channel. */
  const userParam = (c: Context<AppEnv>) => {
    const member = memberParam(c);
    if (!member.startsWith('user:'))
      throw new ValidationError('member: links are for app users (user:…)', 'member');
    return member;
  };

  app.get('/v1/members/:member/links', async (c) => {
    notify(c.get('principal'));
    const member = userParam(c);
    return c.json({ member, ...(await deps.links.links(member)) });
  });

  app.put('/v1/members/:member/links', async (c) => {
    notify(c.get('principal'));
    const member = userParam(c);
    const links = await deps.links.setLinks(member, await readJson(c, Links));
    return c.json({ member, ...links });
  });
}
