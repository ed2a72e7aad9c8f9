import { batch, type RedisClient } from '../redis/client.ts';
import { type Envelope, relayBodyLimit, relayPrefix } from '../funnel/envelope.ts';
import type { Keys } from '../redis/keys.ts';
import type { RoomSettings } from '../rooms/store.ts';
import { type ChannelPlan, type ChannelPlanner, InactiveRooms } from './delivery-plan.ts';
import { isOptedOut, type MemberSettingsStore } from './member-settings.ts';

/** The longest body a room with phone numbers takes: what Twilio sends as one (segmented) SMS. */
export const SMS_MAX_BODY_CHARS = 1600;

/**
 * The longest body, in characters, `sender` may send to an SMS room: its relay, with the
 * `<sender>: ` prefix, must fit one SMS/MMS (DESIGN §2). Ingress refuses longer ones, so no
 * phone ever gets a cut text.
 */
export function smsBodyLimit(sender: Envelope['sender'], roomName: string): number {
  return relayBodyLimit(sender, roomName, SMS_MAX_BODY_CHARS);
}

/**
 * What phone members receive: who spoke, then what they said (`alice: …`, `+15551234567: …`;
 * a service's notification is signed with the room's name). Ingress keeps it within one
 * SMS/MMS; should a room's rename since then push it over, it is cut with a visible `…`
 * rather than refused by Twilio.
 */
export function relayText(env: Envelope, roomName: string): string {
  const chars = [...`${relayPrefix(env.sender, roomName)}${env.body}`];
  if (chars.length <= SMS_MAX_BODY_CHARS) return chars.join('');
  return `${chars.slice(0, SMS_MAX_BODY_CHARS - 1).join('')}…`;
}

/**
 * The SMS channel's planner: before a batch is committed, which phone members to text (the
 * opted out and invalid are skipped), the relay text, the number it goes out from, and
 * whether the sender gets a receipt (an extra job). Member settings live outside the
 * partition's hash slot, so they are read here and handed to the commit script; the channel
 * checks opt-outs again before each text.
 *
 * SMS is active in a room while the room has numbers (its gate, `numbers`). Most rooms have
 * none, and reading each batch's room hashes first was a Redis round trip between every read
 * and its commit. Rooms seen without numbers are remembered and not read again: the commit
 * script checks (UNPLANNED when a room has numbers after all, say added since), and the
 * committer then calls {@link forget} and retries the entry.
 */
export class SmsPlanner implements ChannelPlanner {
  readonly channel = 'sms';
  readonly gate = 'numbers';

  private readonly noNumbers = new InactiveRooms();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly members: MemberSettingsStore,
  ) {}

  /** The room may have numbers now: read its hash again before its next commit. */
  forget(room: string): void {
    this.noNumbers.forget(room);
  }

  /** envelope id → the SMS plan of its commit (none when the room has no numbers). */
  async plan(envelopes: Envelope[]): Promise<Map<string, ChannelPlan>> {
    const plans = new Map<string, ChannelPlan>();
    const roomIds = this.noNumbers.unknown(envelopes);
    if (roomIds.length === 0) return plans;
    // Most rooms have no numbers: their members are not read at all.
    const hashes = batch(this.redis);
    for (const r of roomIds) hashes.hmget(this.keys.room(r), 'name', 'numbers', 'settings');
    const smsRooms: { id: string; name: string; numbers: string; settings: string | null }[] = [];
    ((await hashes.exec()) ?? []).forEach(([err, hash], i) => {
      if (err) throw err;
      const [name, numbers, settings] = hash as [string | null, string | null, string | null];
      const id = roomIds[i] as string;
      if (numbers && numbers !== '[]') smsRooms.push({ id, name: name ?? id, numbers, settings });
      else this.noNumbers.remember(id);
    });
    if (smsRooms.length === 0) return plans;
    const memberSets = batch(this.redis);
    for (const r of smsRooms) memberSets.smembers(this.keys.members(r.id));
    const rooms = new Map<
      string,
      { name: string; settings: RoomSettings; phones: string[]; from: string }
    >();
    ((await memberSets.exec()) ?? []).forEach(([err, members], i) => {
      if (err) throw err;
      const room = smsRooms[i] as (typeof smsRooms)[number];
      const [from = ''] = JSON.parse(room.numbers) as string[];
      rooms.set(room.id, {
        from,
        name: room.name,
        settings: JSON.parse(room.settings ?? '{}') as RoomSettings,
        phones: (members as string[]).filter((m) => m.startsWith('phone:')),
      });
    });
    if (rooms.size === 0) return plans;

    const people = new Set<string>();
    for (const room of rooms.values()) for (const p of room.phones) people.add(p);
    for (const e of envelopes) if (e.sender.kind === 'phone') people.add(`phone:${e.sender.id}`);
    const list = [...people];
    const settings = new Map(
      (await this.members.getMany(list)).map((s, i) => [list[i] as string, s]),
    );

    for (const env of envelopes) {
      const room = rooms.get(env.room);
      if (!room) continue;
      // Relays go out from the room's first number, the receipt from the number texted:
      // opt-outs hold per (member, number), as at the carriers.
      const skip = room.phones.filter(
        (p) => isOptedOut(settings.get(p), room.from) || settings.get(p)?.invalid,
      );
      let confirm = false;
      if (env.sender.kind === 'phone') {
        const s = settings.get(`phone:${env.sender.id}`);
        confirm =
          !isOptedOut(s, env.via || room.from) &&
          !s?.invalid &&
          (s?.confirmations ?? room.settings.confirmations ?? true);
      }
      const media = env.media?.length ? JSON.stringify(env.media) : '';
      const plan: ChannelPlan = {
        skip,
        f: ['from', room.from, 'body', relayText(env, room.name), 'media', media],
      };
      if (confirm)
        plan.extra = [
          {
            to: `phone:${env.sender.id}`,
            kind: 'receipt',
            // The script puts the count of members the message reaches in.
            f: [
              'from',
              env.via || room.from,
              'body',
              `Sent to ${room.name} ({recipients})`,
              'media',
              '',
            ],
          },
        ];
      plans.set(env.id, plan);
    }
    return plans;
  }
}
