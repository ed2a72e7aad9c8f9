import type { z } from 'zod';
import { NewKey } from '../auth/api-keys.ts';
import { StartBody as PhoneStartBody, VerifyBody } from './auth-routes.ts';
import { ReadBody, StartBody as ConversationBody } from './conversations.ts';
import { InviteBody } from './invite-routes.ts';
import { Settings as MemberSettingsBody } from './member-routes.ts';
import { Links, NewBody as NotificationBody, PriorityBody } from './notification-routes.ts';
import { PutBody as PushSubscriptionBody } from './push-routes.ts';
import { NewRoomBody, PublishBody } from './room-bodies.ts';
import { deltaBody, ExpandBody } from './tag-routes.ts';
import { DevSms } from './twilio.ts';
import { PutBody as WebhookBody } from './webhooks.ts';

/**
 * Who may call a route: `public` takes no credentials; `admin` the admin token or an API key
 * with the admin scope; `member` a member's JWT; `tags` and `notify` also a key with that
 * scope; `member-or-admin` either; `publish` also a key with `publish:<room>`; `client`
 * whoever has credentials (a member or the admin); `twilio` Twilio's signature.
 */
export type Access =
  | 'public'
  | 'admin'
  | 'member'
  | 'member-or-admin'
  | 'publish'
  | 'tags'
  | 'notify'
  | 'client'
  | 'twilio';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface Param {
  name: string;
  in: 'query' | 'header';
  description: string;
  schema?: Record<string, unknown>;
  required?: boolean;
}

export interface RouteDoc {
  method: Method;
  /** OpenAPI style: `/v1/rooms/{room}`. */
  path: string;
  tag: string;
  summary: string;
  auth: Access;
  /** The schema `readJson` checks the body with; several: the body is any one of them. */
  body?: z.ZodType | readonly z.ZodType[];
  /** A form body (Twilio's webhooks) rather than JSON. */
  form?: true;
  params?: readonly Param[];
  /** Status → what it means; problem+json is assumed for every status from 400. */
  responses: Readonly<Record<number, string>>;
}

const int = (minimum: number, maximum: number, dflt?: number) => ({
  type: 'integer',
  minimum,
  maximum,
  ...(dflt === undefined ? {} : { default: dflt }),
});
const query = (
  name: string,
  description: string,
  schema: Record<string, unknown> = { type: 'string' },
  required?: true,
): Param => ({
  name,
  in: 'query',
  description,
  schema,
  ...(required ? { required } : {}),
});
const limit = (max: number, dflt: number) =>
  query('limit', `page size, at most ${max}`, int(1, max, dflt));
const cursor = query('cursor', 'the `next` of the previous page');

/** Every route the node serves; test/unit/openapi.test.ts checks the app serves these and no others. */
export const ROUTES: readonly RouteDoc[] = [
  // Operations
  {
    method: 'get',
    path: '/healthz',
    tag: 'operations',
    summary: 'Liveness',
    auth: 'public',
    responses: { 200: '`{status:"ok"}`' },
  },
  {
    method: 'get',
    path: '/readyz',
    tag: 'operations',
    summary: 'Readiness: 200 once the node holds its partitions',
    auth: 'public',
    responses: { 200: '`{status:"ready"}`', 503: 'not ready, or draining' },
  },
  {
    method: 'get',
    path: '/metrics',
    tag: 'operations',
    summary: 'Prometheus metrics',
    auth: 'public',
    responses: { 200: 'Prometheus text format' },
  },
  {
    method: 'get',
    path: '/openapi.json',
    tag: 'operations',
    summary: 'This document',
    auth: 'public',
    responses: { 200: 'OpenAPI 3.1' },
  },
  {
    method: 'get',
    path: '/docs',
    tag: 'operations',
    summary: 'The API reference page, rendered from /openapi.json',
    auth: 'public',
    responses: { 200: 'HTML' },
  },
  {
    method: 'get',
    path: '/v1/cluster',
    tag: 'operations',
    summary: "How this node sees the mesh: nodes, partitions' owners, held leases, sources",
    auth: 'admin',
    responses: { 200: '`{node, nodes, partitions, held, sources}`' },
  },
  {
    method: 'get',
    path: '/v1/connect',
    tag: 'operations',
    summary: 'The WebSocket URL of the live node with the fewest connections',
    auth: 'client',
    responses: { 200: '`{url, node, connections}`', 503: 'no live node' },
  },

  // Rooms
  {
    method: 'post',
    path: '/v1/rooms',
    tag: 'rooms',
    summary: 'Create a room (admin: `{id, …}`), or start a conversation (member: `{members, …}`)',
    auth: 'member-or-admin',
    body: [NewRoomBody, ConversationBody],
    responses: {
      201: 'the room, or `{id, name, members, seq, message?}`',
      400: 'a bad field',
      403: 'members may not create rooms',
      409: 'the room exists',
      429: 'over rooms.createPerHour',
    },
  },
  {
    method: 'get',
    path: '/v1/rooms',
    tag: 'rooms',
    summary: 'List rooms',
    auth: 'admin',
    responses: { 200: '`{rooms}`' },
  },
  {
    method: 'get',
    path: '/v1/rooms/{room}',
    tag: 'rooms',
    summary: 'A room, with its seq and member count',
    auth: 'admin',
    responses: { 200: 'the room', 404: 'no such room' },
  },
  {
    method: 'delete',
    path: '/v1/rooms/{room}',
    tag: 'rooms',
    summary: 'Delete a room',
    auth: 'admin',
    responses: { 204: 'deleted', 404: 'no such room' },
  },
  {
    method: 'get',
    path: '/v1/rooms/{room}/members',
    tag: 'rooms',
    summary: "A room's members",
    auth: 'admin',
    responses: { 200: '`{room, members}`', 404: 'no such room' },
  },
  {
    method: 'put',
    path: '/v1/rooms/{room}/members/{member}',
    tag: 'rooms',
    summary: 'Add a member',
    auth: 'admin',
    responses: {
      200: 'already a member',
      201: 'added',
      400: 'no channel delivers to that prefix',
      404: 'no such room',
    },
  },
  {
    method: 'delete',
    path: '/v1/rooms/{room}/members/{member}',
    tag: 'rooms',
    summary: 'Remove a member',
    auth: 'admin',
    responses: { 204: 'removed', 404: 'not a member' },
  },
  {
    method: 'get',
    path: '/v1/me/rooms',
    tag: 'rooms',
    summary: "The member's rooms, most recent activity first",
    auth: 'member',
    params: [limit(100, 20), query('after', 'the `next` of the previous page')],
    responses: { 200: '`{rooms, next}`' },
  },
  {
    method: 'put',
    path: '/v1/rooms/{room}/read',
    tag: 'rooms',
    summary: "Move the member's read marker forward",
    auth: 'member',
    body: ReadBody,
    responses: { 200: '`{room, member, seq}`' },
  },
  {
    method: 'get',
    path: '/v1/rooms/{room}/reads',
    tag: 'rooms',
    summary: "Every member's read marker",
    auth: 'member-or-admin',
    responses: { 200: '`{room, reads}`' },
  },
  {
    method: 'get',
    path: '/v1/rooms/{room}/presence',
    tag: 'rooms',
    summary: "The room's members online on any live node",
    auth: 'member-or-admin',
    responses: { 200: '`{room, online}`' },
  },

  // Messages
  {
    method: 'post',
    path: '/v1/rooms/{room}/messages',
    tag: 'messages',
    summary: 'Publish a message',
    auth: 'publish',
    body: PublishBody,
    params: [
      query('wait', '`1` or `true`: answer once committed', {
        type: 'string',
        enum: ['1', 'true', '0', 'false'],
      }),
      {
        name: 'Idempotency-Key',
        in: 'header',
        description: 'retries with the same key commit once',
        schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,128}$' },
      },
    ],
    responses: {
      201: '`{id, seq, status}`: committed (`?wait=1`)',
      202: '`{id, status:"accepted"|"pending"}`',
      403: 'the key may not publish here, or not as that sender',
      404: 'no such room',
      413: 'body too large',
      429: 'over the publish rate',
    },
  },
  {
    method: 'get',
    path: '/v1/rooms/{room}/messages',
    tag: 'messages',
    summary: 'Committed messages: after `since`, or the page before `before`',
    auth: 'member-or-admin',
    params: [
      query('since', 'messages with a greater seq', int(0, Number.MAX_SAFE_INTEGER, 0)),
      query('before', 'the page before this seq; empty or `latest`: the latest page'),
      limit(1000, 100),
    ],
    responses: { 200: '`{room, messages, last, truncated?, first?}` or `{room, messages, next}`' },
  },
  {
    method: 'get',
    path: '/v1/messages/{id}',
    tag: 'messages',
    summary: "A committed message's delivery status",
    auth: 'member-or-admin',
    params: [query('room', 'the room it was sent to', { type: 'string' }, true)],
    responses: {
      200: '`{id, room, seq, status, committedAt, recipients, channels?}`',
      404: 'unknown or not committed yet',
    },
  },
  {
    method: 'get',
    path: '/v1/ws',
    tag: 'messages',
    summary: 'The WebSocket (frames: README "WebSocket")',
    auth: 'client',
    params: [query('token', 'the credentials, for browsers that cannot set headers on an upgrade')],
    responses: {
      101: 'switching protocols',
      400: 'an upgrade without `Connection: Upgrade`',
      403: 'an Origin not allowed, or a key without the admin scope',
      404: 'not an upgrade',
      429: 'over the connection caps',
    },
  },

  // Tags
  {
    method: 'get',
    path: '/v1/tags',
    tag: 'tags',
    summary: 'Tags by name, with member counts',
    auth: 'tags',
    params: [limit(1000, 100), cursor],
    responses: { 200: '`{tags, next}`' },
  },
  {
    method: 'post',
    path: '/v1/tags/expand',
    tag: 'tags',
    summary: 'Preview a tag expression',
    auth: 'tags',
    body: ExpandBody,
    responses: { 200: '`{count, members}`', 400: 'a syntax error or an unknown tag' },
  },
  {
    method: 'get',
    path: '/v1/tags/{tag}/members',
    tag: 'tags',
    summary: "A tag's members in ascending order",
    auth: 'tags',
    params: [limit(1000, 100), cursor],
    responses: { 200: '`{tag, members, next}`', 404: 'no such tag' },
  },
  {
    method: 'post',
    path: '/v1/tags/{tag}/members',
    tag: 'tags',
    summary: 'A delta upload (at most tags.maxUpload ids, add and remove together)',
    auth: 'tags',
    body: deltaBody(1_000_000),
    responses: { 200: '`{tag, added, removed, members}`', 400: 'a bad id, named by its index' },
  },
  {
    method: 'put',
    path: '/v1/tags/{tag}/members/{member}',
    tag: 'tags',
    summary: 'Add one member',
    auth: 'tags',
    responses: { 200: 'already there', 201: 'added' },
  },
  {
    method: 'delete',
    path: '/v1/tags/{tag}/members/{member}',
    tag: 'tags',
    summary: 'Remove one member',
    auth: 'tags',
    responses: { 204: 'removed', 404: 'not there' },
  },
  {
    method: 'delete',
    path: '/v1/tags/{tag}',
    tag: 'tags',
    summary: 'Delete a tag',
    auth: 'tags',
    responses: { 204: 'deleted', 404: 'no such tag' },
  },

  // Notifications
  {
    method: 'post',
    path: '/v1/notifications',
    tag: 'notifications',
    summary: 'Send or schedule a notification',
    auth: 'notify',
    body: NotificationBody,
    responses: { 202: '`{id, status:"scheduled"|"queued"}`' },
  },
  {
    method: 'get',
    path: '/v1/notifications/{id}',
    tag: 'notifications',
    summary: "A notification's status and counts",
    auth: 'notify',
    responses: { 200: '`{id, status, priority, …, counts, percent}`', 404: 'unknown' },
  },
  {
    method: 'patch',
    path: '/v1/notifications/{id}',
    tag: 'notifications',
    summary: 'Re-prioritise',
    auth: 'notify',
    body: PriorityBody,
    responses: { 200: 'the status', 409: '`too_late`' },
  },
  {
    method: 'delete',
    path: '/v1/notifications/{id}',
    tag: 'notifications',
    summary: 'Cancel',
    auth: 'notify',
    responses: { 204: 'cancelled', 409: '`too_late`' },
  },
  {
    method: 'get',
    path: '/v1/members/{member}/links',
    tag: 'notifications',
    summary: "An app user's phone and webhook",
    auth: 'notify',
    responses: { 200: '`{member, phone, webhook}`' },
  },
  {
    method: 'put',
    path: '/v1/members/{member}/links',
    tag: 'notifications',
    summary: "Set an app user's phone and webhook (`null` clears one)",
    auth: 'notify',
    body: Links,
    responses: { 200: '`{member, phone, webhook}`' },
  },

  // Members
  {
    method: 'get',
    path: '/v1/members/{member}/settings',
    tag: 'members',
    summary: "A member's settings (the member or the admin)",
    auth: 'member-or-admin',
    responses: { 200: '`{member, missed}`', 403: "anyone else's" },
  },
  {
    method: 'put',
    path: '/v1/members/{member}/settings',
    tag: 'members',
    summary: 'Where missed room messages go',
    auth: 'member-or-admin',
    body: MemberSettingsBody,
    responses: { 200: '`{member, missed}`', 403: "anyone else's" },
  },
  {
    method: 'get',
    path: '/v1/push/key',
    tag: 'members',
    summary: 'The VAPID public key',
    auth: 'public',
    responses: { 200: '`{publicKey}`' },
  },
  {
    method: 'put',
    path: '/v1/me/push',
    tag: 'members',
    summary: 'Register a Web Push subscription',
    auth: 'member',
    body: PushSubscriptionBody,
    responses: { 200: 'replaced', 201: 'registered', 409: 'over push.maxSubscriptionsPerMember' },
  },
  {
    method: 'get',
    path: '/v1/me/push',
    tag: 'members',
    summary: "The member's Web Push subscriptions",
    auth: 'member',
    responses: { 200: '`{subscriptions}`' },
  },
  {
    method: 'delete',
    path: '/v1/me/push',
    tag: 'members',
    summary: 'Remove a Web Push subscription',
    auth: 'member',
    params: [query('endpoint', 'the subscription', { type: 'string' }, true)],
    responses: { 204: 'removed', 404: 'unknown' },
  },

  // Identity
  {
    method: 'post',
    path: '/v1/auth/phone/start',
    tag: 'identity',
    summary: 'Text a sign-in code to a phone',
    auth: 'public',
    body: PhoneStartBody,
    responses: { 202: '`{phone, expiresIn}`', 403: 'country not allowed', 429: 'too many codes' },
  },
  {
    method: 'post',
    path: '/v1/auth/phone/verify',
    tag: 'identity',
    summary: 'Trade the code for a member JWT',
    auth: 'public',
    body: VerifyBody,
    responses: { 200: '`{token, member}`', 401: '`invalid_code`', 429: '`too_many_attempts`' },
  },
  {
    method: 'post',
    path: '/v1/auth/logout-all',
    tag: 'identity',
    summary: 'Refuse every token of the member issued until now',
    auth: 'member',
    responses: { 200: '`{member, revokedBefore}`' },
  },
  {
    method: 'post',
    path: '/v1/keys',
    tag: 'identity',
    summary: 'Create an API key (shown once)',
    auth: 'admin',
    body: NewKey,
    responses: { 201: 'the key record and `key`' },
  },
  {
    method: 'get',
    path: '/v1/keys',
    tag: 'identity',
    summary: 'List API keys, without secrets',
    auth: 'admin',
    responses: { 200: '`{keys}`' },
  },
  {
    method: 'delete',
    path: '/v1/keys/{id}',
    tag: 'identity',
    summary: 'Revoke an API key on every node',
    auth: 'admin',
    responses: { 204: 'revoked', 404: 'unknown' },
  },
  {
    method: 'post',
    path: '/v1/invites',
    tag: 'identity',
    summary: 'Invite a phone',
    auth: 'member',
    body: InviteBody,
    responses: {
      200: 'already pending',
      201: 'the invite',
      409: '`already_connected`, `invited_you` or `connections_full`',
      429: 'over invites.perHour',
    },
  },
  {
    method: 'get',
    path: '/v1/invites',
    tag: 'identity',
    summary: 'Invites received or sent',
    auth: 'member',
    params: [
      query('role', 'received (the default) or sent', {
        type: 'string',
        enum: ['received', 'sent'],
      }),
      limit(1000, 50),
    ],
    responses: { 200: '`{role, invites}`' },
  },
  {
    method: 'get',
    path: '/v1/invites/{id}',
    tag: 'identity',
    summary: 'One invite, for either party',
    auth: 'member',
    responses: { 200: 'the invite', 404: 'not yours' },
  },
  {
    method: 'post',
    path: '/v1/invites/{id}/accept',
    tag: 'identity',
    summary: 'Accept (invitee)',
    auth: 'member',
    responses: { 200: 'the invite, accepted, with its room', 409: 'not pending' },
  },
  {
    method: 'post',
    path: '/v1/invites/{id}/reject',
    tag: 'identity',
    summary: 'Reject (invitee)',
    auth: 'member',
    responses: { 200: 'the invite, rejected', 409: 'not pending' },
  },
  {
    method: 'post',
    path: '/v1/invites/{id}/ack',
    tag: 'identity',
    summary: 'Clear a rejection or cancellation you were told of',
    auth: 'member',
    responses: { 200: 'the invite, cleared', 409: 'nothing to ack' },
  },
  {
    method: 'delete',
    path: '/v1/invites/{id}',
    tag: 'identity',
    summary: 'Cancel (inviter)',
    auth: 'member',
    responses: { 200: 'the invite, cancelled', 409: 'not pending' },
  },
  {
    method: 'get',
    path: '/v1/me/connections',
    tag: 'identity',
    summary: "The member's connections, newest first",
    auth: 'member',
    params: [limit(1000, 100)],
    responses: { 200: '`{connections}`' },
  },

  // Webhooks and SMS
  {
    method: 'put',
    path: '/v1/webhooks/{name}',
    tag: 'channels',
    summary: 'Create or update the webhook endpoint `webhook:<name>` delivers to',
    auth: 'admin',
    body: WebhookBody,
    responses: { 200: 'updated', 201: 'created, with its secret' },
  },
  {
    method: 'get',
    path: '/v1/webhooks/{name}',
    tag: 'channels',
    summary: 'A webhook endpoint, never its secret',
    auth: 'admin',
    responses: { 200: 'the endpoint', 404: 'unknown' },
  },
  {
    method: 'delete',
    path: '/v1/webhooks/{name}',
    tag: 'channels',
    summary: 'Delete a webhook endpoint',
    auth: 'admin',
    responses: { 204: 'deleted', 404: 'unknown' },
  },
  {
    method: 'post',
    path: '/twilio/sms',
    tag: 'channels',
    summary: 'Inbound texts (Twilio webhook)',
    auth: 'twilio',
    form: true,
    responses: { 200: 'TwiML', 403: 'a missing or wrong signature' },
  },
  {
    method: 'post',
    path: '/twilio/status',
    tag: 'channels',
    summary: 'Delivery statuses (Twilio webhook)',
    auth: 'twilio',
    form: true,
    responses: { 204: 'recorded', 403: 'a missing or wrong signature' },
  },
  {
    method: 'post',
    path: '/v1/dev/sms',
    tag: 'channels',
    summary: 'Development mode: simulate a phone texting a room number',
    auth: 'admin',
    body: DevSms,
    responses: { 202: '`{messageSid, outcome}`' },
  },
  {
    method: 'get',
    path: '/v1/dev/outbox',
    tag: 'channels',
    summary: 'Development mode: the texts the node would have sent',
    auth: 'admin',
    responses: { 200: '`{texts}`' },
  },
];
