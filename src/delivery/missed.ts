import { batch, isCluster, type RedisClient } from '../redis/client.ts';
import { type Envelope, memberIdOf, relayPrefix, type Sender } from '../funnel/envelope.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import type { RunnerChannel, SendOutcome } from './channel.ts';
import { type ChannelPlan, type ChannelPlanner, InactiveRooms } from './delivery-plan.ts';
import type { MemberLinks, MemberSettingsStore } from './member-settings.ts';
import { SMS_MAX_BODY_CHARS } from './sms-plan.ts';

/**
 * "Text me what I miss while offline" (DESIGN §4): a member's setting `missed` names the
 * channels (push, webhook, sms, in order) that room messages reach them through when they
 * have no WebSocket open. Its pieces, in the order a message meets them:
 *
 * - each room keeps the set of its members who turned it on (`thr:{p}:room:<r>:missed`), and
 *   the gate `missed` in its hash (mark-missed-3.lua), kept by the setting and by joins and
 *   leaves;
 * - at commit, {@link MissedPlanner} adds one job of the internal channel `missed` per such
 *   member (not the sender; the script checks each is still a member);
 * - the `missed` channel ({@link createMissedChannel}) does nothing for a member who is online
 *   (skipped: they got it live), and otherwise hands the message to their first way: an
 *   ordinary outbox job of that channel (hand-over-2.lua, once per channel and recipient);
 * - a way that fails (push without a subscription, a dead letter) hands it to the next one
 *   ({@link MissedFallback.settled}, told by the runner).
 *
 * The member's copies keep their order: `missed` jobs run in one ordered lane per member, and
 * each way's jobs in that channel's lanes (per member; SMS per sending number).
 */

/** The channel (and job kind) of the planner's jobs; a prefix no member id has. */
export const MISSED = 'missed';

/** What the setting's writer needs of the rooms (RedisRoomsStore). */
export interface MissedRooms {
  markMissed(room: string, member: string, on: boolean): Promise<void>;
}

/** The `missed` setting: read, and written along with the member's rooms' sets. */
export class MissedSettings {
  constructor(
    private readonly members: Pick<MemberSettingsStore, 'missed' | 'setMissed' | 'rooms'>,
    private readonly rooms: MissedRooms,
  ) {}

  async get(member: string): Promise<string[]> {
    return (await this.members.missed(member)).channels;
  }

  /**
   * The setting first, then each room of the member: a join meanwhile reads the setting after
   * adding the room to the member's index (RedisRoomsStore.addMember), so no room is missed.
   * A join that read "on" just before "off" may leave the member in a set: harmless, the
   * channel reads the setting again before anything goes out.
   */
  async set(member: string, channels: readonly string[]): Promise<string[]> {
    await this.members.setMissed(member, channels);
    const rooms = await this.members.rooms(member);
    await Promise.all(rooms.map((r) => this.rooms.markMissed(r, member, channels.length > 0)));
    return [...channels];
  }
}

/**
 * Adds a `missed` job per opted-in member (but the sender) to each commit of a room whose
 * gate is set; rooms seen without it are remembered, as the SMS planner does. A gated room
 * always gets a plan (maybe of no jobs): the script refuses a commit without one.
 */
export class MissedPlanner implements ChannelPlanner {
  readonly channel = MISSED;
  readonly gate = MISSED;
  private readonly none = new InactiveRooms();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  forget(room: string): void {
    this.none.forget(room);
  }

  async plan(envelopes: Envelope[]): Promise<Map<string, ChannelPlan>> {
    const plans = new Map<string, ChannelPlan>();
    const rooms = this.none.unknown(envelopes);
    if (rooms.length === 0) return plans;
    const pipe = batch(this.redis);
    for (const r of rooms) pipe.hget(this.keys.room(r), MISSED).smembers(this.keys.missed(r));
    const replies = (await pipe.exec()) ?? [];
    const byRoom = new Map<string, string[]>();
    rooms.forEach((room, i) => {
      const [[gateErr, gate], [setErr, members]] = replies.slice(i * 2, i * 2 + 2) as [
        [Error | null, string | null],
        [Error | null, string[]],
      ];
      if (gateErr || setErr) throw gateErr ?? setErr;
      if (gate) byRoom.set(room, members.sort());
      else this.none.remember(room);
    });
    for (const env of envelopes) {
      const members = byRoom.get(env.room);
      if (!members) continue;
      const sender = memberIdOf(env.sender);
      const extra = members
        .filter((m) => m !== sender)
        .map((to) => ({ to, kind: MISSED, f: [], member: true }));
      plans.set(env.id, { skip: [], f: [], extra });
    }
    return plans;
  }
}

/** How a member is reached, in the order of their setting: channel, recipient id. */
export type Way = [channel: string, to: string];

/** The ways of an app user: push itself, their linked webhook, their linked phone. */
export function waysOf(member: string, channels: readonly string[], links: MemberLinks): Way[] {
  const ways: Way[] = [];
  for (const ch of channels) {
    if (ch === 'push') ways.push(['push', member]);
    if (ch === 'webhook' && links.webhook) ways.push(['webhook', `webhook:${links.webhook}`]);
    if (ch === 'sms' && links.phone) ways.push(['sms', `phone:${links.phone}`]);
  }
  return ways;
}

export interface MissedDeps {
  redis: RedisClient;
  keys: Keys;
  members: Pick<MemberSettingsStore, 'missed'>;
  /** Which of these members have a live WebSocket (delivery/presence.ts). */
  presence: { online(members: string[]): Promise<boolean[]> };
  /** The channels this node has: a way whose channel is missing (push) is left out. */
  has(channel: string): boolean;
  /** The number texts come from when the room has none. */
  smsFrom: string;
}

type Job = Readonly<Record<string, string | undefined>>;

/** The `missed` channel and what moves a member on to their next way. */
export interface MissedFallback {
  channel: RunnerChannel;
  /** A job of a member's way reached its final outcome: on failure, the next way gets it. */
  settled(job: Job, outcome: string): Promise<void>;
}

/** Outcomes of a way after which the next one is tried. */
const MOVE_ON = ['failed', 'dead', 'skipped'];

export function createMissedChannel(
  deps: MissedDeps,
  defaults: Pick<RunnerChannel, 'maxInFlight' | 'maxQueuedPerLane' | 'sendTimeoutMs' | 'retry'>,
): MissedFallback {
  const { redis, keys } = deps;
  const wake = isCluster(redis) ? '1' : '0';

  /** Hands the message to the way after `after` (the first without), once per way. */
  async function handOver(job: Job, member: string, after?: string): Promise<SendOutcome> {
    const { channels, links } = await deps.members.missed(member);
    const ways = waysOf(member, channels, links).filter(([ch]) => deps.has(ch));
    const way = ways[after === undefined ? 0 : ways.findIndex(([ch]) => ch === after) + 1];
    if (!way) return skipped('no_way', `${member} has no (further) way for missed messages`);
    const [ch, to] = way;
    const room = job.room ?? '';
    const msg = job.msg ?? '';
    const fields: string[] = [
      ...['ch', ch, 'kind', 'relay', 'd', `${room}~${to}~${msg}`, 'to', to, 'rcpt', member],
      ...['room', room, 'msg', msg, 'attempt', '0', 'm', job.m ?? ''],
      ...(job.exp ? ['exp', job.exp] : []),
      ...(ch === 'sms' ? await smsFields(room, job.m ?? '') : []),
    ];
    const p = keys.partitionOf(room);
    // prettier-ignore
    const code = await redis.handOver(keys.msg(p, msg), keys.outbox(p), ch, to, JSON.stringify(fields), wake);
    if (code === Code.NONE) return skipped('gone', 'the message receipt is gone (too old)');
    // ALREADY: handed over before (a run of this job that was not settled), or the way is
    // a member of the room itself: it has the message either way.
    return { status: 'sent', ref: `${ch}:${to}` };
  }

  /** An SMS way: from the room's first number (else the shared one), with room and sender. */
  async function smsFields(room: string, frame: string): Promise<string[]> {
    const [name, numbers] = await redis.hmget(keys.room(room), 'name', 'numbers');
    const [number] = JSON.parse(numbers ?? '[]') as string[];
    const m = JSON.parse(frame || '{}') as { body?: string; sender?: Sender; media?: string[] };
    const roomName = name ?? room;
    const sender = m.sender ?? { kind: 'service', id: roomName };
    // A shared number says which room it is about; a room's own number says it already.
    const head = number ? '' : `[${roomName}] `;
    const chars = [...`${head}${relayPrefix(sender, roomName)}${m.body ?? ''}`];
    const body =
      chars.length <= SMS_MAX_BODY_CHARS
        ? chars.join('')
        : `${chars.slice(0, SMS_MAX_BODY_CHARS - 1).join('')}…`;
    const media = m.media?.length ? JSON.stringify(m.media) : '';
    return ['from', number ?? deps.smsFrom, 'body', body, 'media', media];
  }

  const channel: RunnerChannel = {
    ...defaults,
    name: MISSED,
    // Routed (for its gate) by a prefix no member has, as the handler channel is.
    prefix: MISSED,
    // One ordered lane per member (the default): their messages are handed over in seq order.
    async send(job) {
      const [online] = await deps.presence.online([job.member]);
      if (online) return skipped('online', `${job.member} is online: they got it live`);
      return handOver(job.fields, job.member);
    },
  };
  return {
    channel,
    async settled(job, outcome) {
      if (job.kind !== 'relay' || !job.rcpt || !job.ch || !MOVE_ON.includes(outcome)) return;
      await handOver(job, job.rcpt, job.ch);
    },
  };
}

function skipped(code: string, error: string): SendOutcome {
  return { status: 'failed', outcome: 'skipped', code, error };
}
