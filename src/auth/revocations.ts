import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

export interface RevocationOptions {
  /** How long a logout-all is remembered: as long as the tokens it voids may live. */
  keepMs: number;
  /** How long a looked-up answer is trusted without an event (events update it at once). */
  cacheMs?: number;
}

const CACHE_MS = 30_000;
const MAX_CACHED = 100_000;

/**
 * Logout-all: "every token of this member issued before T is void". T lives in Redis, one key
 * per member (`thr:auth:revoked:<member>`, any slot), and is announced on `thr:auth:revoked`,
 * so every node's cache learns it within the pub/sub latency; a cached answer is also looked up
 * again after `cacheMs`, which covers an event lost while the subscriber reconnected.
 */
export class TokenRevocations {
  private readonly cache = new Map<string, { before: number | undefined; at: number }>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: RevocationOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Feeds the cache from the announcements (this node's own too); `listen` is the node's
   * subscriber (LiveHub), `revoked` what else to do (close the member's open WebSockets).
   */
  async listen(
    listen: (channel: string, handler: (payload: string) => void) => Promise<unknown>,
    revoked: (member: string, before: number) => void = () => {},
  ) {
    await listen(this.keys.revokedChannel, (payload) => {
      let event: { member?: unknown; before?: unknown };
      try {
        event = JSON.parse(payload) as typeof event;
      } catch {
        return; // Not ours to worry about: the next lookup reads Redis.
      }
      const { member, before } = event;
      if (typeof member !== 'string' || typeof before !== 'number') return;
      this.remember(member, before);
      revoked(member, before);
    });
  }

  /** Tokens of `member` issued before this time (ms) are void; undefined: none are. */
  async revokedBefore(member: string): Promise<number | undefined> {
    const hit = this.cache.get(member);
    if (hit && this.now() - hit.at < (this.options.cacheMs ?? CACHE_MS)) return hit.before;
    const raw = await this.redis.get(this.keys.tokensRevoked(member));
    const before = raw === null ? undefined : Number(raw);
    this.remember(member, before);
    return before;
  }

  /** Voids every token of `member` issued until now, on every node; returns the time. */
  async revokeAll(member: string): Promise<number> {
    const before = this.now();
    await this.redis.set(
      this.keys.tokensRevoked(member),
      String(before),
      'PX',
      this.options.keepMs,
    );
    this.remember(member, before);
    await this.redis.publish(this.keys.revokedChannel, JSON.stringify({ member, before }));
    return before;
  }

  private remember(member: string, before: number | undefined) {
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
    this.cache.set(member, { before, at: this.now() });
  }
}
