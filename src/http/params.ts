import type { Context } from 'hono';
import type { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { RecipientId, RoomId } from '../funnel/envelope.ts';
import { isAdmin, memberOf, type Principal } from './auth.ts';
import { bodyText } from './body.ts';

/** A path parameter checked against its schema; a bad one is a 400 naming it. */
function param(c: Context, name: 'room' | 'member', schema: z.ZodType<string>): string {
  const value = c.req.param(name) ?? '';
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new ValidationError(`${name}: ${parsed.error.issues[0]?.message ?? 'invalid'}`, name);
  }
  return value;
}

export const roomParam = (c: Context) => param(c, 'room', RoomId);
export const memberParam = (c: Context) => param(c, 'member', RecipientId);

export function intQuery(
  c: Context,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = c.req.query(name);
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ValidationError(`${name}: expected an integer from ${min} to ${max}`, name);
  }
  return n;
}

/** Parses the body as JSON and checks it; errors name the offending field. */
export async function readJson<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await bodyText(c);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`malformed JSON body: ${(err as Error).message}`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const unknown = issue?.code === 'unrecognized_keys' ? issue.keys[0] : undefined;
    const field = unknown ?? issue?.path.join('.') ?? '';
    throw new ValidationError(
      `${field || 'request body'}: ${issue?.message ?? 'invalid'}`,
      field || undefined,
    );
  }
  return parsed.data;
}

/** The reader a principal is for assertMayRead: the admin, or the member it acts as. */
export function readerOf(principal: Principal): { member?: string | undefined; admin: boolean } {
  // A publish-only key never gets this far (the /v1 middleware stops it): it reads nothing.
  return { member: memberOf(principal), admin: isAdmin(principal) };
}

/**
 * Refuses a member id whose prefix no delivery channel reaches (`known`: the prefixes some
 * channel owns; undefined: any), naming `field` and the prefixes there are.
 */
export function assertReachable(
  member: string,
  known: readonly string[] | undefined,
  field: string,
): void {
  const prefix = member.slice(0, member.indexOf(':'));
  if (!known || known.includes(prefix)) return;
  throw new ValidationError(
    `${field}: no channel delivers to "${prefix}:" members (known: ${known.map((k) => `${k}:`).join(', ')})`,
    field,
  );
}
