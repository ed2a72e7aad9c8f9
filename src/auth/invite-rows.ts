/** Invites as the auth database holds them, and as either party reads them. */

export type InviteState = 'pending' | 'accepted' | 'rejected' | 'cancelled';
export type InviteEvent = 'received' | 'accepted' | 'rejected' | 'cancelled';
export type InviteRole = 'received' | 'sent';

/** An invite as either party reads it (GET, and the `invite` frames). */
export interface Invite {
  id: string;
  state: InviteState;
  /** Member id of the inviter (`user:<id>`, or any client token's member). */
  inviter: string;
  /** The inviter's name as their account has it; empty when it has none. */
  inviterName: string;
  /** `user:<id>`: the invitee always has a user, pending until that phone signs up. */
  invitee: string;
  /** The name the inviter gave the invitee. */
  first: string | null;
  last: string | null;
  /** The invited phone, shown to the inviter only (who typed it). */
  phone?: string;
  /** The two-member room, once accepted. */
  room: string | null;
  /** The invitee has looked at it (listed it, or read it by id). */
  seen: boolean;
  /** The party told of a rejection or cancellation has acked it. */
  cleared: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface Connection {
  member: string;
  room: string;
  since: number;
}

/** Which side of an invite a member is. */
export type Party = 'inviter' | 'invitee';

export interface Row {
  id: string;
  inviter: string;
  invitee: string;
  first: string | null;
  last: string | null;
  state: InviteState;
  seen_at: Date | string | null;
  cleared_at: Date | string | null;
  room: string | null;
  created_at: Date | string;
  updated_at: Date | string;
  phone: string;
  inviter_first: string | null;
  inviter_last: string | null;
}

/** An invite with its invitee's phone and, when the inviter is a user, the inviter's name. */
export const SELECT = `SELECT i.id, i.inviter, i.invitee, i.first, i.last, i.state, i.seen_at, i.cleared_at,
    i.room, i.created_at, i.updated_at, u.phone, n.first AS inviter_first, n.last AS inviter_last
  FROM invites i JOIN users u ON u.id = i.invitee
  LEFT JOIN users n ON i.inviter LIKE 'user:%' AND n.id = substr(i.inviter, 6)`;

export function view(row: Row, as: Party): Invite {
  return {
    id: row.id,
    state: row.state,
    inviter: row.inviter,
    inviterName: nameOf(row),
    invitee: `user:${row.invitee}`,
    first: row.first,
    last: row.last,
    ...(as === 'inviter' ? { phone: row.phone } : {}),
    room: row.room,
    seen: row.seen_at !== null,
    cleared: row.cleared_at !== null,
    createdAt: ms(row.created_at),
    updatedAt: ms(row.updated_at),
  };
}

export function nameOf(row: Row): string {
  return [row.inviter_first, row.inviter_last].filter((s) => s).join(' ');
}

/** The users.id of a `user:<id>` member; undefined for any other member. */
export function userOf(member: string): string | undefined {
  return member.startsWith('user:') ? member.slice('user:'.length) : undefined;
}

export function ms(t: Date | string): number {
  return new Date(t).getTime();
}
