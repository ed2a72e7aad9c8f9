import { batch, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import type { TagReader } from './tag-expansion.ts';

/** Members per ZADD / ZREM of a delta upload. */
const CHUNK = 1000;

export interface TagDelta {
  add?: readonly string[] | undefined;
  remove?: readonly string[] | undefined;
}

export interface TagListPage {
  tags: { tag: string; members: number }[];
  /** The `cursor` of the next page; null at the end. */
  next: string | null;
}

/**
 * Tags over Redis (DESIGN §3): a tag's members are a sorted set of its own, every score 0,
 * in its own slot `{tag:<name>}`; `thr:tags` lists the tags that have members. A tag exists
 * while it has members: its own set is the truth, the index only a listing.
 *
 * No transaction spans the two slots, so every write is the tag's own write first, then the
 * index, in steps that are safe to repeat: a write stopped between them is finished by the
 * next write of that tag. A tag with members is listed once its writer's last step ran; a
 * listed tag without members (a crash between the steps) is skipped by the listing.
 */
export class TagStore implements TagReader {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /**
   * Applies a delta in one transaction on the tag's slot (chunks of {@link CHUNK}), then
   * brings the index up to date. Returns how many were added and removed, and the count after.
   */
  async apply(
    tag: string,
    { add = [], remove = [] }: TagDelta,
  ): Promise<{ added: number; removed: number; members: number }> {
    const key = this.keys.tagMembers(tag);
    const tx = this.redis.multi();
    for (let i = 0; i < remove.length; i += CHUNK) tx.zrem(key, ...remove.slice(i, i + CHUNK));
    for (let i = 0; i < add.length; i += CHUNK)
      tx.zadd(key, ...add.slice(i, i + CHUNK).flatMap((m) => [0, m]));
    tx.zcard(key);
    const replies = ((await tx.exec()) ?? []).map(([err, reply]) => {
      if (err) throw err;
      return reply as number;
    });
    const removes = Math.ceil(remove.length / CHUNK);
    const members = replies.at(-1) ?? 0;
    await this.syncIndex(tag, members);
    return {
      removed: sum(replies.slice(0, removes)),
      added: sum(replies.slice(removes, -1)),
      members,
    };
  }

  async add(tag: string, member: string): Promise<boolean> {
    return (await this.apply(tag, { add: [member] })).added === 1;
  }

  async remove(tag: string, member: string): Promise<boolean> {
    return (await this.apply(tag, { remove: [member] })).removed === 1;
  }

  /** Deletes the tag's members, then unlists it. False when it had none. */
  async delete(tag: string): Promise<boolean> {
    const deleted = await this.redis.del(this.keys.tagMembers(tag));
    await this.syncIndex(tag, 0);
    return deleted === 1;
  }

  /**
   * Lists a tag with members, unlists one without. Unlisting looks again afterwards: a writer
   * that added members between our count and the ZREM may have listed the tag before we
   * unlisted it, and its members must not go unlisted.
   */
  private async syncIndex(tag: string, members: number): Promise<void> {
    if (members > 0) {
      await this.redis.zadd(this.keys.tags, 0, tag);
      return;
    }
    await this.redis.zrem(this.keys.tags, tag);
    const after = await this.redis.zcard(this.keys.tagMembers(tag));
    if (after > 0) await this.redis.zadd(this.keys.tags, 0, tag);
  }

  /** Members of `tag` after `after`, at most `limit`, ascending (ZRANGE … BYLEX). */
  async range(tag: string, after: string | undefined, limit: number): Promise<string[]> {
    const min = after === undefined ? '-' : `(${after}`;
    return this.redis.zrange(this.keys.tagMembers(tag), min, '+', 'BYLEX', 'LIMIT', 0, limit);
  }

  async count(tag: string): Promise<number> {
    return this.redis.zcard(this.keys.tagMembers(tag));
  }

  async exist(tags: readonly string[]): Promise<boolean[]> {
    if (tags.length === 0) return [];
    const pipe = batch(this.redis);
    for (const tag of tags) pipe.exists(this.keys.tagMembers(tag));
    return ((await pipe.exec()) ?? []).map(([err, n]) => {
      if (err) throw err;
      return n === 1;
    });
  }

  /** Tags after `cursor` by name, with their member counts; a page may come short of `limit`. */
  async list(cursor: string | undefined, limit: number): Promise<TagListPage> {
    const min = cursor ? `(${cursor}` : '-';
    const names = await this.redis.zrange(this.keys.tags, min, '+', 'BYLEX', 'LIMIT', 0, limit);
    const pipe = batch(this.redis);
    for (const tag of names) pipe.zcard(this.keys.tagMembers(tag));
    const counts = names.length ? ((await pipe.exec()) ?? []) : [];
    const tags = names
      .map((tag, i) => {
        const [err, members] = counts[i] ?? [null, 0];
        if (err) throw err;
        return { tag, members: members as number };
      })
      // Listed without members: a write stopped half-way (see the class comment).
      .filter((t) => t.members > 0);
    return { tags, next: names.length === limit ? (names.at(-1) ?? null) : null };
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
