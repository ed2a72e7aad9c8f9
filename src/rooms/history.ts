import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

export interface HistoryPage {
  /** Committed messages, each as its client frame (JSON text), in seq order. */
  messages: { seq: number; frame: string }[];
  /** Seq of the last message returned, or `since` when none. */
  last: number;
  /**
   * Set when messages after `since` were trimmed from history (`historyLength`): the seq of
   * the oldest message kept, the first of `messages`. Seqs have no holes, so a first entry
   * past `since + 1` means trimmed.
   */
  first?: number;
}

export interface BackwardPage {
  messages: { seq: number; frame: string }[];
  next: number | null;
}

/** Committed messages of a room: a stream whose entry ids are `<seq>-0`. */
export class History {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** Up to `limit` messages with seq > since. */
  async since(room: string, since: number, limit: number): Promise<HistoryPage> {
    const entries = await this.redis.xrange(
      this.keys.history(room),
      `${since + 1}-0`,
      '+',
      'COUNT',
      limit,
    );
    const messages: HistoryPage['messages'] = [];
    let last = since;
    for (const [id, fields] of entries) {
      last = Number.parseInt(id, 10);
      const frame = fields[1];
      if (frame !== undefined) messages.push({ seq: last, frame });
    }
    const oldest = messages[0]?.seq;
    return oldest !== undefined && oldest > since + 1
      ? { messages, last, first: oldest }
      : { messages, last };
  }

  /**
   * Up to `limit` messages with seq < before (the latest when `before` is undefined), in seq
   * order. `next` is the `before` of the page preceding this one: null once the oldest message
   * kept is in this page.
   */
  async before(room: string, before: number | undefined, limit: number): Promise<BackwardPage> {
    const end = before === undefined ? '+' : `(${before}-0`;
    const entries = await this.redis.xrevrange(this.keys.history(room), end, '-', 'COUNT', limit);
    const messages: HistoryPage['messages'] = [];
    for (let i = entries.length - 1; i >= 0; i--) {
      const [id, fields] = entries[i]!;
      const frame = fields[1];
      if (frame !== undefined) messages.push({ seq: Number.parseInt(id, 10), frame });
    }
    const first = messages[0]?.seq ?? 0;
    return { messages, next: entries.length === limit && first > 1 ? first : null };
  }

  /** The receipt of a committed message (`thr:{p<n>}:msg:<id>`), if it is known. */
  async status(room: string, id: string): Promise<Record<string, string> | undefined> {
    const hash = await this.redis.hgetall(this.keys.msg(this.keys.partitionOf(room), id));
    return hash.room === room ? hash : undefined;
  }

  async lastSeq(room: string): Promise<number> {
    return Number((await this.redis.get(this.keys.seq(room))) ?? 0);
  }
}
