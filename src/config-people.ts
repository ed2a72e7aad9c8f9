import { z } from 'zod';
import { list, ms } from './config-values.ts';

/**
 * The settings of the people-facing services (DESIGN §5): Web Push, accounts, invites and
 * notifications; the rest of the schema is config.ts's.
 */

/** The channels a notification may fall back to, in their usual order. */
export const FALLBACKS = ['push', 'webhook', 'sms'];

export const PEOPLE_SETTINGS = {
  /** The built-in Web Push channel (its subscriptions come from members, PUT /v1/me/push). */
  push: z
    .object({
      /** VAPID key pair (base64url, as web-push prints them); both empty: generated once, kept in Redis. */
      vapidPublicKey: z.string().regex(/^[A-Za-z0-9_-]*$/, 'expected base64url (no padding)'),
      vapidPrivateKey: z.string().regex(/^[A-Za-z0-9_-]*$/, 'expected base64url (no padding)'),
      /** Who push services may contact about this sender (the VAPID `sub` claim). */
      subject: z
        .string()
        .regex(/^(mailto:.+|https:\/\/.+)$/, 'expected a mailto: address or an https: URL'),
      /** How long a push service keeps a notification for a device that is offline. */
      ttlSeconds: z.coerce.number().int().min(0).max(2_419_200),
      /** How long one request to a push service may take; a timeout is retried. */
      timeoutMs: ms(100),
      /** Subscriptions (browsers, devices) one member may register. */
      maxSubscriptionsPerMember: z.coerce.number().int().min(1).max(1000),
    })
    .refine((p) => !p.vapidPublicKey === !p.vapidPrivateKey, {
      message: 'set both push.vapidPublicKey and push.vapidPrivateKey, or neither',
      path: ['vapidPrivateKey'],
    }),
  /** Accounts: sign-up and sign-in by a code texted to a phone (DESIGN §5). */
  auth: z.object({
    /** ISO 3166 region of phones typed without a country code. */
    defaultRegion: z.string().regex(/^[A-Za-z]{2}$/, 'expected an ISO 3166 region such as US'),
    /** Comma-separated regions codes are texted to; empty: the default region only. */
    allowedCountries: z.string().refine((v) => list(v).every((c) => /^[A-Za-z]{2}$/.test(c)), {
      message: 'expected comma-separated ISO 3166 regions such as US,CA',
    }),
    /** The number codes come from; empty in SMS development mode: +15005550006. */
    smsFrom: z.string().regex(/^$|^\+[1-9]\d{6,14}$/, 'expected an E.164 number'),
    /** Starts (code sends) per client address per hour, and over all clients per hour. */
    startsPerAddressPerHour: z.coerce.number().min(0).max(1_000_000),
    startsPerHour: z.coerce.number().min(0).max(100_000_000),
    /** How long a token from POST /v1/auth/phone/verify lasts. */
    tokenTtlHours: z.coerce
      .number()
      .positive()
      .max(24 * 3650),
  }),
  /** Invites and connections (DESIGN §5). */
  invites: z.object({
    /** The link texted to an invitee without an account; `{id}` becomes the invite id. */
    linkUrl: z
      .string()
      .min(1)
      .max(500)
      .refine((v) => v.includes('{id}'), { message: 'expected a link with {id} in it' }),
    /** Connections a member may have; inviting or accepting beyond it is 409. */
    maxConnections: z.coerce.number().int().min(1).max(1_000_000),
    /** Invites a member may send per hour, over every node (0: no limit). */
    perHour: z.coerce.number().min(0).max(1_000_000),
  }),
  /** Notifications (DESIGN §5, §8). */
  notifications: z.object({
    /** How often a node dispatches the due notifications of its partitions. */
    tickMs: ms(10),
    /** Recipients expanded and recorded per step (one script call). */
    pageSize: z.coerce.number().int().min(1).max(10_000),
    /** How long a live recipient has to answer `received` before their fallback starts. */
    fallbackAfterMs: ms(0),
    /** The fallback channels, in order, of a notification that names none. */
    channels: z.string().refine((v) => list(v).every((c) => FALLBACKS.includes(c)), {
      message: 'expected comma-separated channels among push, webhook, sms',
    }),
    /** Members named one by one in a notification (tags and rooms reach more). */
    maxMembers: z.coerce.number().int().min(1).max(100_000),
    /** How far ahead a notification may be scheduled. */
    maxScheduleDays: z.coerce.number().positive().max(3650),
  }),
};
