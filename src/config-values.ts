import { z } from 'zod';

// Small helpers for setting values, shared by the schema files (config.ts, config-people.ts).

/** The items of a comma-separated setting (`ws.allowedOrigins`), trimmed, without empty ones. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

/** A duration setting in ms, from `min` up to a day. */
export const ms = (min: number) => z.coerce.number().int().min(min).max(86_400_000);
