/**
 * The control frame the rooms store publishes on a room's live channel (`thr:live:<r>`) in the
 * same MULTI as a member's removal or the room's deletion. Redis runs commands one at a time,
 * so every message committed afterwards reaches a node's subscriber after it: a session that
 * acts on it at once never forwards a later message of that room to a revoked client.
 */

/** Why a client loses a room: its member was removed, or the room was deleted. */
export type RevokeReason = 'removed' | 'deleted';

export interface Revocation {
  room: string;
  reason: RevokeReason;
  /** The member removed; undefined when the room was deleted (every subscriber loses it). */
  member?: string | undefined;
}

/** Message frames start `{"type":"message"`; a revocation starts with this. */
export const REVOCATION_PREFIX = '{"type":"unsubscribed"';

export function revocationPayload({ room, reason, member }: Revocation): string {
  const frame: Record<string, string> = { type: 'unsubscribed', room, reason };
  if (member !== undefined) frame.member = member;
  return JSON.stringify(frame);
}

/** The revocation a live-channel payload holds, or undefined when it is not one. */
export function parseRevocation(payload: string): Revocation | undefined {
  if (!payload.startsWith(REVOCATION_PREFIX)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  const { room, reason, member } = value as Record<string, unknown>;
  if (typeof room !== 'string' || (reason !== 'removed' && reason !== 'deleted')) return undefined;
  if (member !== undefined && typeof member !== 'string') return undefined;
  return { room, reason, member };
}
