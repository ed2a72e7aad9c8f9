import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

/**
 * Frames for one member's open WebSockets, wherever they are connected (invites; notifications
 * later). Every node follows one channel, `thr:member:notices`, and hands each frame to its
 * own sockets of that member: a member's sockets may be on any node, and a subscription per
 * member would cost every node a SUBSCRIBE per connection. Best effort, as pub/sub is: a
 * member with no socket open hears nothing, so what a frame says must also be readable over
 * HTTP.
 */
export class MemberNotices {
  constructor(
    private readonly redis: Pick<RedisClient, 'publish'>,
    private readonly keys: Keys,
  ) {}

  /** Sends `frame` (JSON text, as clients get it) to every open WebSocket of `member`. */
  async notify(member: string, frame: string): Promise<void> {
    await this.redis.publish(this.keys.memberNotices, JSON.stringify({ member, frame }));
  }

  /** Hands what is published to `deliver` (this node's sockets); `listen` is the LiveHub's. */
  async listen(
    listen: (channel: string, handler: (payload: string) => void) => Promise<unknown>,
    deliver: (member: string, frame: string) => void,
  ): Promise<void> {
    await listen(this.keys.memberNotices, (payload) => {
      let notice: { member?: unknown; frame?: unknown };
      try {
        notice = JSON.parse(payload) as typeof notice;
      } catch {
        return;
      }
      if (typeof notice.member === 'string' && typeof notice.frame === 'string')
        deliver(notice.member, notice.frame);
    });
  }
}
