import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.ts';

/** A member's own settings, the same in every room (`thr:member:<id>`, DESIGN §3). */
export interface MemberSettings {
  /** undefined: the room's default (its `confirmations` setting, on when unset). */
  confirmations?: boolean;
  /** Texted STOP (or Twilio answered 21610): gets no texts until START. */
  optedOut: boolean;
  /** Twilio answered 21211: not a number texts can reach. */
  invalid: boolean;
}

const FIELDS = ['confirmations', 'optedOut', 'invalid'] as const;

/**
 * Reads and writes `thr:member:<id>`. These keys carry no partition hash tag, so the commit
 * script never touches them: what it needs is read before the commit and passed in.
 */
export class MemberSettingsStore {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  async get(member: string): Promise<MemberSettings> {
    const [settings] = await this.getMany([member]);
    return settings as MemberSettings;
  }

  async getMany(members: string[]): Promise<MemberSettings[]> {
    if (members.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const m of members) pipe.hmget(this.keys.member(m), ...FIELDS);
    const results = (await pipe.exec()) ?? [];
    return results.map(([err, values]) => {
      if (err) throw err;
      const [confirmations, optedOut, invalid] = values as (string | null)[];
      const settings: MemberSettings = { optedOut: optedOut === '1', invalid: invalid === '1' };
      if (confirmations === 'on' || confirmations === 'off')
        settings.confirmations = confirmations === 'on';
      return settings;
    });
  }

  async setConfirmations(member: string, on: boolean): Promise<void> {
    await this.redis.hset(this.keys.member(member), 'confirmations', on ? 'on' : 'off');
  }

  async setOptedOut(member: string, optedOut: boolean): Promise<void> {
    await this.redis.hset(this.keys.member(member), 'optedOut', optedOut ? '1' : '0');
  }

  async setInvalid(member: string): Promise<void> {
    await this.redis.hset(this.keys.member(member), 'invalid', '1');
  }

  /** The rooms a member belongs to (`thr:member:<id>:rooms`). */
  async rooms(member: string): Promise<string[]> {
    return (await this.redis.smembers(this.keys.memberRooms(member))).sort();
  }
}
