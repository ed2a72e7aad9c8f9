import type { RedisClient } from '../redis/client.ts';
import { ConfigError } from '../errors.ts';
import type { Keys } from '../redis/keys.ts';

export interface MembershipOptions {
  nodeId: string;
  /** Members silent longer than this are dropped from the live set. */
  nodeTtlMs: number;
  /** What peers and operators see of this node (`thr:node:<id>`). */
  info: { url: string; startedAt: number; version: string };
}

export interface MeshEvent {
  /** `released`: the node gave up partitions, so their new owners can take them now. */
  type: 'join' | 'leave' | 'released';
  node: string;
}

/** This node's entry in the live set (`thr:nodes`), refreshed every heartbeat. */
export class Membership {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: MembershipOptions,
  ) {}

  /**
   * Refuses to join when a live node already heartbeats under our id: two processes with
   * one id would take each other's leases every round. A fresh heartbeat left by our own
   * earlier life (a crash, a quick restart) stops advancing; a twin's keeps moving.
   */
  async assertNoTwin(watchMs: number): Promise<void> {
    const { nodeId, nodeTtlMs } = this.options;
    const seen = await this.redis.zscore(this.keys.nodes, nodeId);
    if (seen === null) return;
    const [sec, usec] = await this.redis.time();
    if (Number(sec) * 1000 + Number(usec) / 1000 - Number(seen) > nodeTtlMs) return;
    await new Promise((r) => setTimeout(r, watchMs));
    const later = await this.redis.zscore(this.keys.nodes, nodeId);
    if (later !== null && Number(later) > Number(seen)) {
      throw new ConfigError(
        'nodeId',
        `another live node already uses the id ${nodeId}: give every node its own THRESHOLD_NODE_ID ` +
          '(the default, <hostname>-<port>, is unique per machine and port)',
      );
    }
  }

  /** Refreshes our heartbeat, drops silent nodes, and returns the live node ids, sorted. */
  async heartbeat(connections: number): Promise<string[]> {
    const { nodeId, nodeTtlMs, info } = this.options;
    // The node's hash and the live set are in different slots: the hash first, so a node in
    // the live set always has one.
    const node = this.keys.node(nodeId);
    await this.redis
      .multi()
      .hset(node, { ...info, connections, assigned: 0 })
      .pexpire(node, nodeTtlMs * 4)
      .exec();
    const live = await this.redis.heartbeatNode(this.keys.nodes, nodeId, nodeTtlMs);
    return live.slice(1) as string[];
  }

  async announce(type: MeshEvent['type']): Promise<void> {
    const event: MeshEvent = { type, node: this.options.nodeId };
    await this.redis.publish(this.keys.meshChannel, JSON.stringify(event));
  }

  /** Leaves the live set at once (graceful stop) and tells the peers. */
  async leave(): Promise<void> {
    const { nodeId } = this.options;
    await this.redis.zrem(this.keys.nodes, nodeId);
    await this.redis.del(this.keys.node(nodeId));
    await this.announce('leave');
  }
}
