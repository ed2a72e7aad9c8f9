import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { batch, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import { within } from '../within.ts';

export interface PresenceOptions {
  nodeId: string;
  /**
   * The mesh's node ttl: a node silent longer than this (paused, or cut off from Redis) was
   * dropped from the live set and swept by its peers, so it writes its members again.
   */
  nodeTtlMs: number;
  /**
   * Members taken at once (SPOP) from a gone node's set: each is handled by exactly one
   * sweeping node.
   * @default 100
   */
  sweepBatch?: number;
  /**
   * How long stop() may clear this node's presence (Redis may be gone); the peers sweep what
   * is left once the node has left the live set.
   * @default 2000
   */
  stopTimeoutMs?: number;
}

export const DEFAULT_PRESENCE_OPTIONS: Required<Omit<PresenceOptions, 'nodeId' | 'nodeTtlMs'>> = {
  sweepBatch: 100,
  stopTimeoutMs: 2000,
};

/** Only members with accounts are online or not: never the admin, a phone or a webhook. */
const TRACKED = 'user:';
/** Members asked about (or rooms told) per batch, so a large room is read in bounded steps. */
const PAGE = 500;

/**
 * Which members have a live WebSocket on some node (DESIGN §3, §5). Kept per member, so a
 * member in 1,000 rooms writes one key when connecting: `thr:presence:<member>` holds each
 * node's count of the member's open WebSockets, and `thr:presence:node:<node>` the members a
 * node has connections for (what is swept when it dies). A field counts only while its node
 * is live, so a crashed node's members go offline with the node ttl even before the sweep.
 * Coming online (the first connection on any node) and going offline (the last one closed,
 * or the node gone) is published as a `presence` frame on the live channel of each of the
 * member's rooms.
 */
export class Presence {
  readonly name = 'presence';
  private readonly options: Required<PresenceOptions>;
  /** Open WebSockets per tracked member on this node. */
  private readonly local = new Map<string, number>();
  /** Per member, the Redis write in flight: one at a time, so they land in order. */
  private readonly writes = new Map<string, Promise<void>>();
  /** Per member, the write queued behind the one in flight and not started yet. */
  private readonly queued = new Map<string, Promise<void>>();
  /** The leftovers of an earlier life of this node id, cleared before its first write. */
  private cleared: Promise<void> | undefined;
  private sweeping: Promise<void> = Promise.resolve();
  /** The live nodes at the coordinator's last heartbeat. */
  private live: ReadonlySet<string> | undefined;
  private lastLive = 0;
  private stopped = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    options: PresenceOptions,
    private readonly metrics: Pick<Metrics, 'presenceMembers'>,
    private readonly log: Logger,
  ) {
    this.options = { ...DEFAULT_PRESENCE_OPTIONS, ...options };
  }

  /** A WebSocket of `member` opened on this node. Never rejects (failures are logged). */
  connected(member: string): Promise<void> {
    return this.change(member, 1);
  }

  /** A WebSocket of `member` closed on this node. Never rejects (failures are logged). */
  disconnected(member: string): Promise<void> {
    return this.change(member, -1);
  }

  /** Whether each member is online (a live WebSocket on a live node), in the order asked. */
  async online(members: readonly string[]): Promise<boolean[]> {
    const live = new Set(this.live ?? []).add(this.options.nodeId);
    const online = members.map(() => false);
    const asked = members.flatMap((m, i) => (m.startsWith(TRACKED) ? [i] : []));
    for (let start = 0; start < asked.length; start += PAGE) {
      const page = asked.slice(start, start + PAGE);
      const pipe = batch(this.redis);
      for (const i of page) pipe.hkeys(this.keys.presence(members[i] as string));
      const replies = (await pipe.exec()) ?? [];
      page.forEach((i, j) => {
        const [err, nodes] = replies[j] ?? [new Error('no reply to HKEYS')];
        if (err) throw err;
        online[i] = (nodes as string[]).some((n) => live.has(n));
      });
    }
    return online;
  }

  /** The room's members who are online, sorted. */
  async room(room: string): Promise<string[]> {
    const members = (await this.redis.smembers(this.keys.members(room))).filter((m) =>
      m.startsWith(TRACKED),
    );
    const online = await this.online(members);
    return members.filter((_, i) => online[i]).sort();
  }

  /**
   * The coordinator's live nodes, every heartbeat: the nodes that dropped out since the last
   * one (silent longer than the node ttl, or gone on purpose) are swept, in the background.
   */
  onLive(live: readonly string[]): void {
    const previous = this.live;
    this.live = new Set(live);
    const silent = Date.now() - this.lastLive;
    this.lastLive = Date.now();
    if (!previous || this.stopped) return;
    if (silent > this.options.nodeTtlMs) {
      this.log.warn({ silentMs: silent }, 'silent past the node ttl: writing presence again');
      for (const member of this.local.keys()) void this.enqueue(member);
    }
    const gone = [...previous].filter((n) => !live.includes(n) && n !== this.options.nodeId);
    if (gone.length === 0) return;
    this.sweeping = this.sweeping
      .then(() => this.sweep(gone))
      .catch((err: unknown) => this.log.warn({ err, nodes: gone }, 'presence sweep failed'));
  }

  /**
   * Takes the members of each node's set (SPOP, so each is handled by one sweeping node
   * only), deletes the node's field of each and publishes those who went offline.
   */
  async sweep(nodes: readonly string[]): Promise<void> {
    for (const node of nodes) {
      const index = this.keys.presenceNode(node);
      for (;;) {
        const members = await this.redis.spop(index, this.options.sweepBatch);
        if (members.length === 0) break;
        const pipe = batch(this.redis);
        for (const m of members) pipe.setPresence(this.keys.presence(m), node, 0);
        const replies = (await pipe.exec()) ?? [];
        for (const [i, member] of members.entries()) {
          const [err, reply] = replies[i] ?? [new Error('no reply to setPresence')];
          if (err) {
            this.log.warn({ err, member, node }, 'could not sweep a member of a gone node');
            continue;
          }
          const [before, left] = reply as [number, number];
          if (before > 0 && left === 0) await this.announce(member, false);
        }
      }
    }
  }

  /** Clears what an earlier life of this node id left (a crash; ids are reused on restart). */
  start(): Promise<void> {
    return (this.cleared ??= this.clearOwn());
  }

  /**
   * Before the node leaves: lets the writes in flight land, then clears this node's presence
   * (sockets still closing included) and publishes who went offline; bounded, so a Redis that
   * is gone does not hold the shutdown.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    const work = (async () => {
      await Promise.allSettled([...this.writes.values(), this.sweeping]);
      await this.sweep([this.options.nodeId]);
    })();
    const outcome = await within(
      work.then(
        () => 'done' as const,
        (err: unknown) => {
          this.log.warn({ err }, 'could not clear presence; peers sweep it once this node left');
          return 'failed' as const;
        },
      ),
      this.options.stopTimeoutMs,
    );
    if (outcome === 'late')
      this.log.warn('presence not cleared in time; peers sweep the rest once this node left');
  }

  private clearOwn(): Promise<void> {
    const clearing = this.sweep([this.options.nodeId]);
    // A failure is tried again by the next write.
    clearing.catch(() => {
      if (this.cleared === clearing) this.cleared = undefined;
    });
    return clearing;
  }

  private change(member: string, delta: 1 | -1): Promise<void> {
    if (!member.startsWith(TRACKED)) return Promise.resolve();
    const count = (this.local.get(member) ?? 0) + delta;
    if (count > 0) this.local.set(member, count);
    else this.local.delete(member);
    this.metrics.presenceMembers.set(this.local.size);
    return this.enqueue(member);
  }

  private enqueue(member: string): Promise<void> {
    // A write not started yet writes the count as it is when it starts: this change joins it,
    // so a member's burst of connections (a reconnect storm, many tabs) costs one or two writes,
    // not one per connection.
    const waiting = this.queued.get(member);
    if (waiting) return waiting;
    const next = (this.writes.get(member) ?? Promise.resolve()).then(() => {
      this.queued.delete(member);
      return this.write(member);
    });
    this.queued.set(member, next);
    this.writes.set(member, next);
    void next.then(() => {
      if (this.writes.get(member) === next) this.writes.delete(member);
    });
    return next;
  }

  /** Writes the member's count on this node as it is by now (later changes are coalesced). */
  private async write(member: string): Promise<void> {
    if (this.stopped) return;
    const { nodeId } = this.options;
    try {
      await (this.cleared ??= this.clearOwn());
      const count = this.local.get(member) ?? 0;
      const index = this.keys.presenceNode(nodeId);
      // Two keys in two slots (a script on both would be cross-slot on a cluster), ordered so
      // that a crash between the two steps is harmless: on the way up the sweep index first,
      // on the way down the field first. Either way a crash can leave a member in the index
      // with no field (swept for nothing), never a field the index does not list (which would
      // count as online again once a restarted node reuses the id).
      if (count > 0) await this.redis.sadd(index, member);
      const [before, nodes] = await this.redis.setPresence(
        this.keys.presence(member),
        nodeId,
        count,
      );
      if (count === 0) await this.redis.srem(index, member);
      if (before === 0 && count > 0 && nodes === 1) await this.announce(member, true);
      else if (before > 0 && count === 0 && nodes === 0) await this.announce(member, false);
    } catch (err) {
      this.log.warn({ err, member }, 'could not record presence');
    }
  }

  /** `{"type":"presence","room","member","online"}` on the live channel of each of its rooms. */
  private async announce(member: string, online: boolean): Promise<void> {
    const rooms = await this.redis.smembers(this.keys.memberRooms(member));
    for (let start = 0; start < rooms.length; start += PAGE) {
      const pipe = batch(this.redis);
      for (const room of rooms.slice(start, start + PAGE))
        pipe.publish(
          this.keys.live(room),
          JSON.stringify({ type: 'presence', room, member, online }),
        );
      for (const [err] of (await pipe.exec()) ?? []) if (err) throw err;
    }
  }
}
