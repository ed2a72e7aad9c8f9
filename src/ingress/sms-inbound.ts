import { isCluster, type RedisClient } from '../redis/client.ts';
import { wakeChannel } from '../redis/stream-wakes.ts';
import { isOptedOut, type MemberSettingsStore } from '../delivery/member-settings.ts';
import { smsBodyLimit } from '../delivery/sms-plan.ts';
import { ForbiddenError, NotFoundError, RejectedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';
import type { Room, RoomsStore } from '../rooms/store.ts';
import type { Ingress } from './ingress.ts';
import { type Keyword, parseKeyword } from './sms-keywords.ts';

/** A keyword acted on: an opt-in word ("yes") has become START, or a plain message, by then. */
type ActionKeyword = Exclude<Keyword, { kind: 'optin' }>;

/** One text as Twilio's inbound webhook describes it. */
export interface InboundSms {
  messageSid: string;
  /** The phone that texted, E.164. */
  from: string;
  /** The room number it texted, E.164. */
  to: string;
  body: string;
  media: string[];
}

export type InboundOutcome =
  | 'relayed'
  | 'keyword'
  | 'opt_out'
  | 'duplicate'
  | 'not_member'
  | 'unknown_number'
  | 'too_long'
  | 'rejected';

export interface SmsInboundOptions {
  /** How long a MessageSid is remembered (Twilio retries a webhook for a while). */
  dedupeTtlMs: number;
  /**
   * How long a MessageSid is claimed while it is handled (its text into the funnel, or its
   * keyword acted on and answered); a crash meanwhile lets Twilio's retry act after this.
   * @default 30000
   */
  claimMs?: number;
}

/**
 * The Twilio source: a text to a room's number becomes an envelope in the funnel, or, when
 * it is a keyword, a change of the sender's settings answered through the outbox. Nothing
 * here waits for a commit or a send, so Twilio gets its answer at once.
 */
export class SmsInbound {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly rooms: RoomsStore,
    private readonly members: MemberSettingsStore,
    private readonly ingress: Ingress,
    private readonly metrics: Metrics,
    private readonly options: SmsInboundOptions,
    private readonly log: Logger,
  ) {}

  async handle(sms: InboundSms): Promise<InboundOutcome> {
    const outcome = await this.route(sms);
    this.metrics.smsInbound.inc({ outcome });
    if (outcome === 'not_member' || outcome === 'unknown_number')
      this.metrics.discarded.inc({ reason: outcome });
    return outcome;
  }

  private async route(sms: InboundSms): Promise<InboundOutcome> {
    const { keys } = this;
    const roomId = await this.redis.get(keys.number(sms.to));
    const room = roomId ? await this.rooms.get(roomId) : undefined;
    if (!room) {
      this.log.info(
        { to: sms.to, messageSid: sms.messageSid },
        'text to a number no room uses: discarded (add the number to a room, or point it elsewhere in the Twilio console)',
      );
      return 'unknown_number';
    }
    const seen = keys.twilioSeen(sms.messageSid);
    const parsed = parseKeyword(sms.body);
    const member = `phone:${sms.from}`;
    // "Yes" opts back in only a member opted out of this number; from others it is a message.
    const keyword: ActionKeyword | undefined =
      parsed?.kind === 'optin'
        ? isOptedOut(await this.members.get(member), sms.to)
          ? { kind: 'start' }
          : undefined
        : parsed;
    const limit = smsBodyLimit({ kind: 'phone', id: sms.from }, room.name);
    // Too long for the relay (with its "<sender>: " prefix) to fit one SMS/MMS. Strangers get
    // no answer, as for any message of theirs.
    const tooLong =
      !keyword && [...sms.body].length > limit && (await this.rooms.isMember(room.id, member));

    // Claimed first, so the same MessageSid twice at once is handled once; the claim is short
    // until the work is recorded (a crash in between must not make Twilio's retry a
    // "duplicate"), and taken back when it failed, so Twilio's retry (after our 503) acts.
    if (!(await this.redis.set(seen, 'claimed', 'PX', this.options.claimMs ?? 30_000, 'NX')))
      return 'duplicate';

    if (keyword || tooLong) {
      try {
        const reply = keyword
          ? await this.keyword(keyword, sms, room)
          : `Not sent: texts to ${room.name} take at most ${limit} characters from you; yours had ${[...sms.body].length}.`;
        // STOP gets no answer from us: Twilio (Advanced Opt-Out) answers it, and refuses
        // (21610) anything we would send to an opted-out phone.
        if (reply !== undefined) await this.reply(sms, room, reply);
      } catch (err) {
        await this.redis.del(seen).catch(() => {});
        throw err;
      }
      await this.handled(seen);
      if (keyword?.kind === 'stop') return 'opt_out';
      return keyword ? 'keyword' : 'too_long';
    }

    try {
      await this.ingress.submit(
        {
          room: room.id,
          source: 'twilio',
          sender: { kind: 'phone', id: sms.from },
          kind: 'chat',
          body: sms.body,
          media: sms.media,
          id: `twilio:${sms.messageSid}`,
          via: sms.to,
        },
        false,
      );
    } catch (err) {
      if (err instanceof ForbiddenError) {
        this.log.info(
          { from: sms.from, room: room.id, messageSid: sms.messageSid },
          'text from a phone that is not a member: discarded (members join by texting JOIN to an open room, or an admin adds them)',
        );
        return 'not_member';
      }
      if (err instanceof NotFoundError) return 'unknown_number';
      if (err instanceof RejectedError) {
        // A room's validator refused it: the sender is told why, by text.
        await this.reply(sms, room, `Not sent to ${room.name}: ${err.message}`);
        await this.handled(seen);
        return 'rejected';
      }
      await this.redis.del(seen).catch(() => {});
      throw err;
    }
    // A replay is now skipped here (the commit would have ignored it anyway, being the same
    // envelope id).
    await this.handled(seen);
    return 'relayed';
  }

  /** The MessageSid's work is recorded: remember it for the dedupe ttl. */
  private async handled(seen: string): Promise<void> {
    await this.redis.set(seen, '1', 'PX', this.options.dedupeTtlMs);
  }

  /** Acts on a keyword; resolves with the answer, or undefined for none (STOP). */
  private async keyword(
    keyword: ActionKeyword,
    sms: InboundSms,
    room: Room,
  ): Promise<string | undefined> {
    const member = `phone:${sms.from}`;
    const name = room.name;
    switch (keyword.kind) {
      case 'join': {
        if (await this.rooms.isMember(room.id, member)) return `You are already in ${name}.`;
        if (!room.settings.open)
          return `${name} is invite-only: ask its organiser to add you. Text HELP for help.`;
        await this.rooms.addMember(room.id, member);
        return `Welcome to ${name}! Texts to this number go to everyone in it. LEAVE to leave, HELP for help.`;
      }
      case 'leave':
        if (!(await this.rooms.removeMember(room.id, member))) return `You are not in ${name}.`;
        return `You left ${name}.${room.settings.open ? ' Text JOIN to come back.' : ''}`;
      case 'stop':
        // Only this number: the member's other rooms (other numbers) keep texting them.
        await this.members.setOptedOut(member, sms.to, true);
        this.log.info(
          { from: sms.from, to: sms.to, room: room.id },
          'opt-out: no more texts to this phone from this number until it texts START',
        );
        return undefined;
      case 'start':
        await this.members.setOptedOut(member, sms.to, false);
        return `Texts from ${name} are back on. Text HELP for help.`;
      case 'confirm':
        await this.members.setConfirmations(member, keyword.on);
        return keyword.on
          ? 'Confirmations on: you get a receipt for every text you send.'
          : 'Confirmations off. Text CONFIRM ON to get them again.';
      case 'rooms': {
        const ids = await this.members.rooms(member);
        const rooms = (await Promise.all(ids.map((id) => this.rooms.get(id)))).filter(
          (r): r is Room => r !== undefined,
        );
        if (rooms.length === 0) return 'You are in no rooms.';
        const settings = await this.members.get(member);
        const line = (r: Room) => {
          const number = r.numbers[0] ?? '';
          const stopped =
            number && isOptedOut(settings, number) ? ' (stopped: text START to it)' : '';
          return `${r.name} ${number}`.trim() + stopped;
        };
        return `Your rooms: ${rooms.map(line).join(', ')}`;
      }
      case 'help':
      case 'invalid':
        return `${name}: texts to this number go to the room (at most ${smsBodyLimit({ kind: 'phone', id: sms.from }, name)} characters from you). JOIN, LEAVE, ROOMS, CONFIRM ON/OFF, STOP, START, HELP.`;
    }
  }

  /** Answers a keyword through the room's outbox, from the number the sender texted. */
  private async reply(sms: InboundSms, room: Room, body: string): Promise<void> {
    const outbox = this.keys.outbox(this.keys.partitionOf(room.id));
    // prettier-ignore
    await this.redis.xadd(
      outbox, '*',
      'ch', 'sms', 'kind', 'reply', 'd', '', 'to', `phone:${sms.from}`, 'room', room.id,
      'msg', `twilio:${sms.messageSid}`, 'attempt', 0, 'm', '',
      'from', sms.to, 'body', body, 'media', '',
    );
    // On a Redis Cluster the outbox's owner waits for this, not for an XREAD BLOCK.
    if (isCluster(this.redis)) await this.redis.spublish(wakeChannel(outbox), '');
  }
}
