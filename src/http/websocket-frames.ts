import { z } from 'zod';
import { isRedisUnavailable, RateLimitedError, ThresholdError } from '../errors.ts';
import { RoomId } from '../funnel/envelope.ts';

/** Close codes a client can act on. */
export const CLOSE = {
  /** The client did not read fast enough; reconnect and subscribe with `since`. */
  SLOW_CONSUMER: 4008,
  /** No pong to the server's ping. */
  HEARTBEAT_TIMEOUT: 4009,
  /** The node is shutting down; reconnect (any node). */
  GOING_AWAY: 1001,
  /** Policy violation: the client kept sending far over its frame rate. */
  POLICY_VIOLATION: 1008,
  /** The member logged out everywhere (logout-all): its token no longer works. */
  REVOKED: 4001,
} as const;

/** A frame a client may send (DESIGN §5). */
export const ClientFrame = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('subscribe'),
      room: RoomId.optional(),
      /** "mine": every room of the member, and those they join later. */
      rooms: z.literal('mine').optional(),
      since: z.number().int().min(0).optional(),
    })
    .refine((f) => (f.room === undefined) !== (f.rooms === undefined), {
      message: 'expected either room or rooms:"mine"',
      path: ['room'],
    }),
  z.object({ type: z.literal('read'), room: RoomId, seq: z.number().int().min(0) }),
  z.object({ type: z.literal('unsubscribe'), room: RoomId }),
  z.object({
    type: z.literal('publish'),
    room: RoomId,
    body: z.string().min(1),
    id: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[\x21-\x7e]+$/, 'expected printable ASCII without spaces')
      .optional(),
    media: z.array(z.url()).max(10).optional(),
  }),
  z.object({ type: z.literal('ping') }),
  /** A notification reached the client (its fallback over other channels stops). */
  z.object({
    type: z.literal('received'),
    id: z.string().regex(/^[0-9a-z]{26}$/, 'expected a notification id'),
  }),
]);
export type ClientFrame = z.infer<typeof ClientFrame>;
export type PublishFrame = Extract<ClientFrame, { type: 'publish' }>;

/** Parses a client's text frame; throws a SyntaxError or ZodError ({@link describeFrameError}). */
export function parseClientFrame(text: string): ClientFrame {
  return ClientFrame.parse(JSON.parse(text));
}

/** The `bad_frame` message for what {@link parseClientFrame} threw: the field at fault. */
export function describeFrameError(err: unknown): string {
  if (err instanceof SyntaxError)
    return 'frames are JSON text: {"type":"subscribe"|"unsubscribe"|"publish"|"read"|"received"|"ping", ...}';
  if (err instanceof z.ZodError) {
    const issue = err.issues[0];
    const field = issue?.path.join('.') || 'type';
    return `${field}: ${issue?.message ?? 'invalid'}`;
  }
  return 'invalid frame';
}

/** An `error` frame, with the publish `id` and the `room` it concerns when there is one. */
export function errorFrame(
  code: string,
  message: string,
  id?: string,
  room?: string,
  extra?: { retryAfterMs: number },
): string {
  const frame: Record<string, unknown> = { type: 'error', code, message };
  if (id !== undefined) frame.id = id;
  if (room !== undefined) frame.room = room;
  if (extra) Object.assign(frame, extra);
  return JSON.stringify(frame);
}

/** The `error` frame for a request that failed, or undefined for an unexpected failure (a bug). */
export function errorFrameFor(err: unknown, id?: string, room?: string): string | undefined {
  if (err instanceof RateLimitedError)
    return errorFrame(err.code, err.message, id, room, { retryAfterMs: err.retryAfterMs });
  if (err instanceof ThresholdError) return errorFrame(err.code, err.message, id, room);
  if (isRedisUnavailable(err))
    return errorFrame('unavailable', 'Redis is unavailable right now; retry shortly', id, room);
  return undefined;
}
