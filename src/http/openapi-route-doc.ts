import type { z } from 'zod';

// How a route is described in the OpenAPI document (src/http/openapi.ts), and helpers for
// its query parameters; the route lists are openapi-routes.ts and openapi-people-routes.ts.

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

export const int = (minimum: number, maximum: number, dflt?: number) => ({
  type: 'integer',
  minimum,
  maximum,
  ...(dflt === undefined ? {} : { default: dflt }),
});
export const query = (
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
export const limit = (max: number, dflt: number) =>
  query('limit', `page size, at most ${max}`, int(1, max, dflt));
export const cursor = query('cursor', 'the `next` of the previous page');
