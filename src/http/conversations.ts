import type { Hono } from 'hono';
import { z } from 'zod';
import { ForbiddenError, ValidationError } from '../errors.ts';
import { RecipientId, senderOfMember } from '../funnel/envelope.ts';
import { newUlid } from '../ids.ts';
import type { Accepted, Submission } from '../ingress/ingress.ts';
import { assertMayRead } from '../rooms/access.ts';
import type { ConversationPage } from '../rooms/conversations.ts';
import type { Room, RoomsStore } from '../rooms/store.ts';
import type { AppEnv } from './app.ts';
import { memberOf, type Principal } from './auth.ts';
import { assertReachable, intQuery, readerOf, readJson, roomParam } from './params.ts';

/** What the conversation routes need of the read markers and the member's list of rooms. */
export interface ConversationReader {
  list(member: string, limit: number, after?: string): Promise<ConversationPage>;
  markRead(room: string, member: string, seq: number): Promise<number>;
  reads(room: string): Promise<Record<string, number>>;
}

export interface ConversationDeps {
  rooms: Pick<RoomsStore, 'create' | 'addMember' | 'get' | 'isMember'>;
  conversations: ConversationReader;
  ingress: { submit(submission: Submission, wait: boolean): Promise<Accepted> };
  /** Counts a room started by the member; throws RateLimitedError (429) over its limit. */
  creationLimit(member: string): Promise<void>;
  options: {
    membersMayCreate: boolean;
    /** Members a started room may have at most, its creator included. */
    maxCreatedMembers: number;
    maxBodyChars: number;
    /** Member-id prefixes some channel reaches; others are refused. */
    memberPrefixes?: readonly string[] | undefined;
  };
}

/** The conversation settings from the config. */
export function conversationOptions(
  config: {
    rooms: { membersMayCreate: boolean; maxCreatedMembers: number };
    http: { maxBodyChars: number };
  },
  memberPrefixes: readonly string[],
): ConversationDeps['options'] {
  const { membersMayCreate, maxCreatedMembers } = config.rooms;
  return {
    membersMayCreate,
    maxCreatedMembers,
    maxBodyChars: config.http.maxBodyChars,
    memberPrefixes,
  };
}

export const StartBody = z
  .object({
    members: z.array(RecipientId).min(1).max(10_000),
    name: z.string().min(1).max(200).optional(),
    body: z.string().min(1, 'must not be empty').optional(),
  })
  .strict();

export const ReadBody = z.object({ seq: z.number().int().min(0) }).strict();

const MAX_LIST_PAGE = 100;

/**
 * Rooms as a member's conversations (DESIGN §5): members start them (`POST /v1/rooms` with a
 * member token), list theirs by recency (`GET /v1/me/rooms`), and keep read markers.
 * Registered before the admin routes: `POST /v1/rooms` by an admin falls through to those.
 */
export function conversationRoutes(app: Hono<AppEnv>, deps: ConversationDeps): void {
  const { rooms, conversations, ingress, options } = deps;

  app.post('/v1/rooms', async (c, next) => {
    const principal = c.get('principal');
    if (principal.kind !== 'member') return next();
    const creator = principal.member;
    if (!options.membersMayCreate)
      throw new ForbiddenError(
        'rooms are created by the admin here (rooms.membersMayCreate is off)',
      );
    const body = await readJson(c, StartBody);
    const members = [...new Set([creator, ...body.members])];
    if (members.length > options.maxCreatedMembers)
      throw new ValidationError(
        `members: at most ${options.maxCreatedMembers} members in a room you start, you included`,
        'members',
      );
    for (const m of members) assertReachable(m, options.memberPrefixes, 'members');
    if (body.body !== undefined && body.body.length > options.maxBodyChars)
      throw new ValidationError(`body: longer than ${options.maxBodyChars} characters`, 'body');
    await deps.creationLimit(creator);

    const room: Room = await rooms.create({
      id: `c-${newUlid().toLowerCase()}`,
      ...(body.name ? { name: body.name } : {}),
    });
    for (const m of members) await rooms.addMember(room.id, m);
    const created = { ...room, members: members.length };
    if (body.body === undefined) return c.json(created, 201);
    const accepted = await ingress.submit(
      {
        room: room.id,
        source: 'http',
        sender: senderOfMember(creator),
        kind: 'chat',
        body: body.body,
        rateLimited: creator,
      },
      true,
    );
    const receipt = await accepted.receipt?.promise.catch(() => undefined);
    const message = receipt?.seq
      ? { id: accepted.id, seq: receipt.seq, status: receipt.status }
      : { id: accepted.id, status: 'pending' };
    return c.json({ ...created, seq: receipt?.seq ?? 0, message }, 201);
  });

  app.get('/v1/me/rooms', async (c) => {
    const member = actingMember(c.get('principal'), 'GET /v1/me/rooms');
    const limit = intQuery(c, 'limit', 20, 1, MAX_LIST_PAGE);
    const after = c.req.query('after') || undefined;
    return c.json(await conversations.list(member, limit, after));
  });

  app.put('/v1/rooms/:room/read', async (c) => {
    const room = roomParam(c);
    const member = actingMember(c.get('principal'), 'a read marker');
    const { seq } = await readJson(c, ReadBody);
    return c.json({ room, member, seq: await conversations.markRead(room, member, seq) });
  });

  app.get('/v1/rooms/:room/reads', async (c) => {
    const room = roomParam(c);
    await assertMayRead(rooms, room, readerOf(c.get('principal')));
    return c.json({ room, reads: await conversations.reads(room) });
  });
}

/** The member a request acts as; the admin token has no rooms or markers of its own. */
function actingMember(principal: Principal, what: string): string {
  const member = memberOf(principal);
  if (member) return member;
  throw new ForbiddenError(`${what} belongs to a member: use a member's token`);
}
