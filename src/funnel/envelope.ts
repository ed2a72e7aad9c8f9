import { z } from 'zod';
import { ROOM_ID } from '../redis/keys.ts';

/** Member ids (DESIGN §3): `user:<name>` for app users, `phone:<E.164>` for SMS members. */
export const MEMBER_ID = /^(user:[A-Za-z0-9._@-]{1,64}|phone:\+[1-9]\d{6,14})$/;
export const E164 = /^\+[1-9]\d{6,14}$/;

export const RoomId = z
  .string()
  .regex(
    ROOM_ID,
    'expected a room id: a-z 0-9 _ -, starting with a letter or digit, at most 64 characters',
  );
export const MemberId = z
  .string()
  .regex(MEMBER_ID, 'expected a member id such as user:alice or phone:+15551234567');

/**
 * Room members: the members who publish (MEMBER_ID), or a delivery channel's recipients,
 * `<channel prefix>:<id>` (`webhook:billing`, `pager:ops`).
 */
export const RecipientId = z
  .string()
  .refine(
    (m) =>
      MEMBER_ID.test(m) ||
      (!/^(user|phone):/.test(m) && /^[a-z][a-z0-9-]{0,31}:[A-Za-z0-9._@+-]{1,128}$/.test(m)),
    'expected a member id such as user:alice, phone:+15551234567 or webhook:billing',
  );

export const Sender = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('user'), id: z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/) }),
  z.object({ kind: z.literal('phone'), id: z.string().regex(E164) }),
  z.object({ kind: z.literal('service'), id: z.string().regex(/^[A-Za-z0-9._@:-]{1,64}$/) }),
]);
export type Sender = z.infer<typeof Sender>;

export const ENVELOPE_VERSION = 1;

/** One funnel entry (DESIGN §2), stored as JSON in the entry's field `e`. */
export const Envelope = z.object({
  v: z.literal(ENVELOPE_VERSION),
  id: z.string().min(1).max(300),
  room: RoomId,
  source: z.string().min(1).max(32),
  sender: Sender,
  body: z.string(),
  media: z.array(z.url()).max(10).optional(),
  kind: z.enum(['chat', 'notification']),
  origin: z.object({ node: z.string(), conn: z.string().optional() }),
  receivedAt: z.number().int(),
  /** SMS: the room number the text came in on, so the sender's receipt comes from it. */
  via: z.string().regex(E164).optional(),
});
export type Envelope = z.infer<typeof Envelope>;

/** The member id a sender is checked against for room membership; services are not members. */
export function memberIdOf(sender: Sender): string {
  return sender.kind === 'service' ? '' : `${sender.kind}:${sender.id}`;
}

/** Who a relayed text (SMS) says it is from: `<sender id>: `, or `<room name>: ` for a service. */
export function relayPrefix(sender: Sender, roomName: string): string {
  return `${sender.kind === 'service' ? roomName : sender.id}: `;
}

/**
 * The longest body, in characters, `sender` may send when its relay, prefix included, may
 * take at most `max` characters.
 */
export function relayBodyLimit(sender: Sender, roomName: string, max: number): number {
  return max - [...relayPrefix(sender, roomName)].length;
}

/** The sender a member id (`user:alice`, `phone:+1555…`, already validated) publishes as. */
export function senderOfMember(member: string): Sender {
  const i = member.indexOf(':');
  return { kind: member.slice(0, i), id: member.slice(i + 1) } as Sender;
}

/** Parses a funnel entry's `e` field; throws a ZodError or SyntaxError when it is not a v1 envelope. */
export function parseEnvelope(json: string): Envelope {
  return Envelope.parse(JSON.parse(json));
}

/**
 * The committed message as clients see it: the WebSocket `message` frame, which is also
 * what the history stream stores. Split around the seq, which only the commit script knows.
 */
export function messageFrameParts(env: Envelope): [head: string, tail: string] {
  const head = `{"type":"message","room":${JSON.stringify(env.room)},"seq":`;
  const rest: Record<string, unknown> = {
    id: env.id,
    sender: env.sender,
    kind: env.kind,
    body: env.body,
  };
  if (env.media?.length) rest.media = env.media;
  rest.ts = env.receivedAt;
  return [head, `,${JSON.stringify(rest).slice(1)}`];
}
