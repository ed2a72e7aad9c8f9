import {
  ConflictError,
  ForbiddenError,
  NotFoundError,
  UnavailableError,
  ValidationError,
} from '../errors.ts';
import { newUlid } from '../ids.ts';
import type { Logger } from '../log.ts';
import type { AuthDatabase, Queryable } from './database.ts';
import {
  type Connection,
  type Invite,
  type InviteEvent,
  type InviteRole,
  type InviteState,
  type Party,
  type Row,
  SELECT,
  nameOf,
  ms,
  userOf,
  view,
} from './invite-rows.ts';
import type { Phone } from './phones.ts';

export interface InvitesDeps {
  db: () => Promise<AuthDatabase>;
  phones: { parse(input: string): Phone; isAllowed(phone: Phone): boolean };
  /** How an invite is texted to a phone without an account; undefined: this node cannot. */
  sms: { send(sms: { to: string; from: string; body: string }): Promise<unknown> } | undefined;
  /** Opens an accepted invite's room with both members in it; safe to call again for the same room. */
  rooms: { openPair(room: string, members: readonly [string, string]): Promise<void> };
  /** A frame for the member's open WebSockets, on any node. */
  notices: { notify(member: string, frame: string): Promise<void> };
  /** Counts an invite by the member; throws RateLimitedError (429) over `invites.perHour`. */
  limit(member: string): Promise<void>;
  log: Logger;
}

export interface InvitesOptions {
  smsFrom: string;
  /** The link texted to an invitee without an account; `{id}` is replaced by the invite id. */
  linkUrl: string;
  /** Connections a member may have; an invite or accept beyond it is 409 `connections_full`. */
  maxConnections: number;
}

/** Invite ids are lowercase ULIDs; anything else is an invite nobody has. */
const INVITE_ID = /^[0-9a-z]{26}$/;
/** Advisory-lock class of "a member's connections" (two-key form: apart from the migration lock). */
const CONNECTIONS_LOCK = 0x496e_7673; // "Invs"

/**
 * Invites and connections (DESIGN §5): a member invites a phone; the invitee accepts (a
 * connection and a two-member room), rejects (the inviter is told and acks it away), or the
 * inviter cancels. An invite cancelled before the invitee looked never existed for them, and
 * an invite that is not yours is 404 everywhere, so ids tell nobody anything.
 */
export class Invites {
  constructor(
    private readonly deps: InvitesDeps,
    private readonly options: InvitesOptions,
  ) {}

  /** A new pending invite (`created`), or the pending one the inviter already sent that phone. */
  async create(
    inviter: string,
    request: { phone: string; first?: string | undefined; last?: string | undefined },
  ): Promise<{ invite: Invite; created: boolean }> {
    const { deps } = this;
    const phone = deps.phones.parse(request.phone);
    if (!deps.phones.isAllowed(phone))
      throw new ForbiddenError(
        `phone: invites are not texted to numbers of ${phone.country || 'that country'} here (auth.allowedCountries)`,
      );
    await deps.limit(inviter);
    const db = await deps.db();
    const outcome = await db.transaction(async (tx) => {
      // The invitee's user, pending when the phone has none: the same id once it signs up.
      const [user] = await tx.query<{ id: string; state: string }>(
        `INSERT INTO users (id, phone) VALUES ($1, $2)
         ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id, state`,
        [newUlid().toLowerCase(), phone.e164],
      );
      const { id: userId, state } = user as { id: string; state: string };
      const invitee = `user:${userId}`;
      if (invitee === inviter)
        throw new ValidationError('phone: that is your own number; invite someone else', 'phone');
      if (await this.connected(tx, inviter, invitee))
        throw new ConflictError(`you are already connected with ${invitee}`, 'already_connected');
      const [theirs] = await tx.query<{ id: string }>(
        `SELECT id FROM invites WHERE inviter = $1 AND invitee = $2 AND state = 'pending'`,
        [invitee, userOf(inviter) ?? ''],
      );
      if (theirs)
        throw new ConflictError(
          `${invitee} has invited you already: accept their invite ${theirs.id} (POST /v1/invites/${theirs.id}/accept)`,
          'invited_you',
        );
      const pending = () =>
        tx.query<{ id: string }>(
          `SELECT id FROM invites WHERE inviter = $1 AND invitee = $2 AND state = 'pending'`,
          [inviter, userId],
        );
      const verified = state === 'verified';
      const [mine] = await pending();
      if (mine) return { id: mine.id, created: false, verified };
      await this.assertRoom(tx, inviter, 'your');
      if (!verified && !(deps.sms && this.options.smsFrom))
        throw new UnavailableError(
          'this node cannot send SMS (no TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, or no auth.smsFrom): a phone without an account cannot be invited',
        );
      const [inserted] = await tx.query<{ id: string }>(
        `INSERT INTO invites (id, inviter, invitee, first, last) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (inviter, invitee) WHERE state = 'pending' DO NOTHING RETURNING id`,
        [newUlid().toLowerCase(), inviter, userId, request.first ?? null, request.last ?? null],
      );
      // Sent twice at once: the other request's insert won.
      if (!inserted) return { id: (await pending())[0]?.id ?? '', created: false, verified };
      return { id: inserted.id, created: true, verified };
    });
    const row = await this.row(db, outcome.id);
    if (!outcome.created) return { invite: view(row, 'inviter'), created: false };
    if (outcome.verified) await this.tell(`user:${row.invitee}`, 'received', row);
    else await this.text(db, row);
    return { invite: view(row, 'inviter'), created: true };
  }

  /** `received`: pending ones to me (now seen) and cancelled ones I had seen and not acked; `sent`: pending and unacked rejected ones. */
  async list(member: string, role: InviteRole, limit: number): Promise<Invite[]> {
    const db = await this.deps.db();
    if (role === 'sent') {
      const rows = await db.query<Row>(
        `${SELECT} WHERE i.inviter = $1
           AND (i.state = 'pending' OR (i.state = 'rejected' AND i.cleared_at IS NULL))
         ORDER BY i.created_at DESC, i.id DESC LIMIT $2`,
        [member, limit],
      );
      return rows.map((r) => view(r, 'inviter'));
    }
    const user = userOf(member);
    if (user === undefined) return [];
    return db.transaction(async (tx) => {
      const rows = await tx.query<Row>(
        `${SELECT} WHERE i.invitee = $1
           AND (i.state = 'pending'
             OR (i.state = 'cancelled' AND i.seen_at IS NOT NULL AND i.cleared_at IS NULL))
         ORDER BY i.created_at DESC, i.id DESC LIMIT $2 FOR UPDATE OF i`,
        [user, limit],
      );
      await this.markSeen(
        tx,
        rows.filter((r) => r.state === 'pending' && r.seen_at === null),
      );
      return rows.map((r) => view(r, 'invitee'));
    });
  }

  /** One invite, for either party; the invitee reading a pending one has seen it. */
  async get(member: string, id: string): Promise<Invite> {
    const db = await this.deps.db();
    return db.transaction(async (tx) => {
      const { row, as } = await this.find(tx, member, id, true);
      if (as === 'invitee' && row.state === 'pending' && row.seen_at === null)
        await this.markSeen(tx, [row]);
      return view(row, as);
    });
  }

  /**
   * The invitee accepts: a connection both ways and a two-member room `c-<invite id>`. The room
   * is opened before the invite's row changes, in its transaction: an accept that failed
   * half-way leaves a pending invite, and accepting again finishes it.
   */
  async accept(member: string, id: string): Promise<Invite> {
    const db = await this.deps.db();
    const accepted = await db.transaction(async (tx) => {
      const peek = await this.find(tx, member, id);
      this.must(
        peek.as,
        'invitee',
        id,
        'accepts',
        `the inviter may cancel it (DELETE /v1/invites/${id})`,
      );
      // Both members' connection counts hold still until this commits (the caps).
      for (const m of [peek.row.inviter, member].sort())
        await tx.query('SELECT pg_advisory_xact_lock($1::int, hashtext($2))', [
          CONNECTIONS_LOCK,
          m,
        ]);
      const { row } = await this.find(tx, member, id, true);
      if (row.state === 'accepted') return undefined;
      this.assertPending(row, 'accepted');
      await this.assertRoom(tx, row.inviter, `the inviter's (${row.inviter})`);
      await this.assertRoom(tx, member, 'your');
      const room = `c-${row.id}`;
      await this.deps.rooms.openPair(room, [row.inviter, member]);
      await tx.query(
        `UPDATE invites SET state = 'accepted', room = $2, updated_at = now() WHERE id = $1`,
        [row.id, room],
      );
      await tx.query(
        `INSERT INTO connections (member, peer, room) VALUES ($1, $2, $3), ($2, $1, $3)
         ON CONFLICT (member, peer) DO NOTHING`,
        [row.inviter, member, room],
      );
      return row.id;
    });
    const row = await this.row(db, id);
    if (accepted) await this.tell(row.inviter, 'accepted', row);
    return view(row, 'invitee');
  }

  /** The invitee says no; the inviter is told, and sees it in `sent` until acking it. */
  async reject(member: string, id: string): Promise<Invite> {
    return this.close(member, id, 'invitee', 'rejected');
  }

  /** The inviter takes it back; an invitee who had looked is told, one who had not never hears of it. */
  async cancel(member: string, id: string): Promise<Invite> {
    return this.close(member, id, 'inviter', 'cancelled');
  }

  /** Clears a rejection (the inviter) or a cancellation the invitee was told of. */
  async ack(member: string, id: string): Promise<Invite> {
    const db = await this.deps.db();
    return db.transaction(async (tx) => {
      const { row, as } = await this.find(tx, member, id, true);
      const told = as === 'inviter' ? 'rejected' : 'cancelled';
      if (row.state !== told)
        throw new ConflictError(
          `invite ${id} is ${row.state}: the ${as} acks only a ${told} one`,
          'not_ackable',
        );
      await tx.query(
        `UPDATE invites SET cleared_at = COALESCE(cleared_at, now()), updated_at = now() WHERE id = $1`,
        [id],
      );
      return { ...view(row, as), cleared: true };
    });
  }

  /** The member's connections, newest first. */
  async connections(member: string, limit: number): Promise<Connection[]> {
    const db = await this.deps.db();
    const rows = await db.query<{ peer: string; room: string; created_at: Date | string }>(
      `SELECT peer, room, created_at FROM connections WHERE member = $1
       ORDER BY created_at DESC, peer LIMIT $2`,
      [member, limit],
    );
    return rows.map((r) => ({ member: r.peer, room: r.room, since: ms(r.created_at) }));
  }

  private async close(member: string, id: string, by: Party, state: 'rejected' | 'cancelled') {
    const db = await this.deps.db();
    const changed = await db.transaction(async (tx) => {
      const { row, as } = await this.find(tx, member, id, true);
      const other = by === 'invitee' ? 'the inviter may cancel it' : 'the invitee may reject it';
      this.must(as, by, id, state === 'rejected' ? 'rejects' : 'cancels', other);
      if (row.state === state) return false;
      this.assertPending(row, state);
      await tx.query(`UPDATE invites SET state = $2, updated_at = now() WHERE id = $1`, [
        id,
        state,
      ]);
      return true;
    });
    const row = await this.row(db, id);
    if (changed && state === 'rejected') await this.tell(row.inviter, 'rejected', row);
    if (changed && state === 'cancelled' && row.seen_at !== null)
      await this.tell(`user:${row.invitee}`, 'cancelled', row);
    return view(row, by);
  }

  /** The invite and which party `member` is; 404 for anyone else, and for an invitee it was cancelled on before they looked. */
  private async find(
    q: Queryable,
    member: string,
    id: string,
    lock = false,
  ): Promise<{ row: Row; as: Party }> {
    const missing = new NotFoundError(`no invite ${id.slice(0, 64)} of yours`);
    if (!INVITE_ID.test(id)) throw missing;
    const [row] = await q.query<Row>(`${SELECT} WHERE i.id = $1${lock ? ' FOR UPDATE OF i' : ''}`, [
      id,
    ]);
    if (!row) throw missing;
    if (row.inviter === member) return { row, as: 'inviter' };
    const unseenCancel = row.state === 'cancelled' && row.seen_at === null;
    if (member === `user:${row.invitee}` && !unseenCancel) return { row, as: 'invitee' };
    throw missing;
  }

  private async row(q: Queryable, id: string): Promise<Row> {
    const [row] = await q.query<Row>(`${SELECT} WHERE i.id = $1`, [id]);
    if (!row) throw new NotFoundError(`no invite ${id}`);
    return row;
  }

  private must(as: Party, by: Party, id: string, verb: string, instead: string): void {
    if (as !== by) throw new ForbiddenError(`only the ${by} ${verb} invite ${id}; ${instead}`);
  }

  private assertPending(row: Row, to: InviteState): void {
    if (row.state !== 'pending')
      throw new ConflictError(
        `invite ${row.id} is ${row.state}: only a pending invite can be ${to}`,
        'invite_closed',
      );
  }

  private async connected(q: Queryable, member: string, peer: string): Promise<boolean> {
    const rows = await q.query('SELECT 1 FROM connections WHERE member = $1 AND peer = $2', [
      member,
      peer,
    ]);
    return rows.length > 0;
  }

  /** 409 `connections_full` when `member` has `invites.maxConnections` connections already. */
  private async assertRoom(q: Queryable, member: string, whose: string): Promise<void> {
    const [count] = await q.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM connections WHERE member = $1',
      [member],
    );
    const max = this.options.maxConnections;
    if ((count?.n ?? 0) >= max)
      throw new ConflictError(
        `${whose} list of connections is full: ${max} is the most (invites.maxConnections)`,
        'connections_full',
      );
  }

  private async markSeen(q: Queryable, rows: Row[]): Promise<void> {
    if (rows.length === 0) return;
    const seen = new Date();
    await q.query(
      `UPDATE invites SET seen_at = $2 WHERE id = ANY($1::text[]) AND seen_at IS NULL`,
      [rows.map((r) => r.id), seen],
    );
    for (const r of rows) r.seen_at = seen;
  }

  /** The invite's live frame to one member; a failed publish is logged (lists show it anyway). */
  private async tell(member: string, event: InviteEvent, row: Row): Promise<void> {
    const as: Party = event === 'received' || event === 'cancelled' ? 'invitee' : 'inviter';
    const frame = JSON.stringify({ type: 'invite', event, invite: view(row, as) });
    await this.deps.notices.notify(member, frame).catch((err: unknown) => {
      this.deps.log.warn({ err, invite: row.id, event }, 'invite event not published');
    });
  }

  /** Texts the link to a phone without an account; an invite that could not be texted is gone. */
  private async text(db: AuthDatabase, row: Row): Promise<void> {
    const name = nameOf(row) || 'Someone';
    const link = this.options.linkUrl.replaceAll('{id}', row.id);
    try {
      await this.deps.sms?.send({
        to: row.phone,
        from: this.options.smsFrom,
        body: `${name} invited you to Threshold: ${link}`,
      });
    } catch (err) {
      await db.query('DELETE FROM invites WHERE id = $1', [row.id]);
      throw err;
    }
  }
}
