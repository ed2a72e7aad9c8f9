import { batch, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

/** A member's own settings (`thr:member:<id>`, DESIGN §3; `missed` is read by missed.ts). */
export interface MemberSettings {
  /** undefined: the room's default (its `confirmations` setting, on when unset). */
  confirmations?: boolean;
  /**
   * Our numbers the member opted out of (texted STOP to, or Twilio answered 21610 when we
   * texted from): as carriers do, an opt-out holds for one (member, sending number) pair.
   */
  optedOutOf: string[];
  /** Twilio answered 21211: not a number texts can reach. */
  invalid: boolean;
}

/** Where an app user is reached besides their WebSockets and push subscriptions. */
export interface MemberLinks {
  /** E.164: texts (the sms channel). */
  phone?: string;
  /** A webhook endpoint's name (the webhook channel, `webhook:<name>`). */
  webhook?: string;
}

/** Field of `thr:member:<id>` that marks an opt-out of one of our numbers. */
const OPTED_OUT = 'optedOut:';

/** True when texts from our number `from` must not go to this member. */
export function isOptedOut(settings: MemberSettings | undefined, from: string): boolean {
  return settings?.optedOutOf.includes(from) ?? false;
}

/**
 * Reads and writes `thr:member:<id>`. These keys carry no partition hash tag, so the commit
 * script never touches them: what it needs is read before the commit and passed in.
 */
export class MemberSettingsStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  async get(member: string): Promise<MemberSettings> {
    const [settings] = await this.getMany([member]);
    return settings as MemberSettings;
  }

  async getMany(members: string[]): Promise<MemberSettings[]> {
    if (members.length === 0) return [];
    const pipe = batch(this.redis);
    for (const m of members) pipe.hgetall(this.keys.member(m));
    const results = (await pipe.exec()) ?? [];
    return results.map(([err, values]) => {
      if (err) throw err;
      const hash = (values ?? {}) as Record<string, string>;
      const optedOutOf = Object.entries(hash)
        .filter(([k, v]) => k.startsWith(OPTED_OUT) && v === '1')
        .map(([k]) => k.slice(OPTED_OUT.length));
      const settings: MemberSettings = { optedOutOf, invalid: hash.invalid === '1' };
      const confirmations = hash.confirmations;
      if (confirmations === 'on' || confirmations === 'off')
        settings.confirmations = confirmations === 'on';
      return settings;
    });
  }

  async setConfirmations(member: string, on: boolean): Promise<void> {
    await this.redis.hset(this.keys.member(member), 'confirmations', on ? 'on' : 'off');
  }

  /** Opts the member out of (or back in to) texts from our number `from`, and only that one. */
  async setOptedOut(member: string, from: string, optedOut: boolean): Promise<void> {
    const key = this.keys.member(member);
    if (optedOut) await this.redis.hset(key, OPTED_OUT + from, '1');
    else await this.redis.hdel(key, OPTED_OUT + from);
  }

  async setInvalid(member: string): Promise<void> {
    await this.redis.hset(this.keys.member(member), 'invalid', '1');
  }

  /** How a member is reached out of band (notification fallback): `link:phone`, `link:webhook`. */
  async links(member: string): Promise<MemberLinks> {
    return (await this.linksOf([member]))[0] as MemberLinks;
  }

  /** The links of many members, in one round trip. */
  async linksOf(members: readonly string[]): Promise<MemberLinks[]> {
    if (members.length === 0) return [];
    const pipe = batch(this.redis);
    for (const m of members) pipe.hmget(this.keys.member(m), 'link:phone', 'link:webhook');
    return ((await pipe.exec()) ?? []).map(([err, values]) => {
      if (err) throw err;
      const [phone, webhook] = values as (string | null)[];
      return { ...(phone ? { phone } : {}), ...(webhook ? { webhook } : {}) };
    });
  }

  /** Sets (a value) or clears (null) a member's links; fields left out stay as they are. */
  async setLinks(member: string, links: { [K in keyof MemberLinks]?: string | null }) {
    const key = this.keys.member(member);
    for (const [name, value] of Object.entries(links)) {
      if (value === undefined) continue;
      if (value === null) await this.redis.hdel(key, `link:${name}`);
      else await this.redis.hset(key, `link:${name}`, value);
    }
    return this.links(member);
  }

  /**
   * The channels (push, webhook, sms) a member wants the room messages they miss while offline
   * sent through, in order ([]: off, the default), and their links: one round trip.
   */
  async missed(member: string): Promise<{ channels: string[]; links: MemberLinks }> {
    // prettier-ignore
    const [missed, phone, webhook] = await this.redis.hmget(this.keys.member(member), 'missed', 'link:phone', 'link:webhook');
    const links = { ...(phone ? { phone } : {}), ...(webhook ? { webhook } : {}) };
    return { channels: missed ? missed.split(',') : [], links };
  }

  /** Sets the member's `missed` channels ([]: off); their rooms' sets are the caller's. */
  async setMissed(member: string, channels: readonly string[]): Promise<void> {
    const key = this.keys.member(member);
    if (channels.length > 0) await this.redis.hset(key, 'missed', channels.join(','));
    else await this.redis.hdel(key, 'missed');
  }

  /** The rooms a member belongs to (`thr:member:<id>:rooms`). */
  async rooms(member: string): Promise<string[]> {
    return (await this.redis.smembers(this.keys.memberRooms(member))).sort();
  }
}
