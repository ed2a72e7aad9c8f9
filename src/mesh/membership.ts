import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.ts';

export interface MembershipOptions {
  nodeId: string;
  /** Members silent longer than this are dropped from the live set. */
  nodeTtlMs: number;
  /** What peers and operators see of this node (`thr:node:<id>`). */
  info: { url: string; startedAt: number; version: string };
}

export interface MeshEvent {
  type: 'join' | 'leave';
  node: string;
}

/** This node's entry in the live set (`thr:nodes`), refreshed every heartbeat. */
export class Membership {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly options: MembershipOptions,
  ) {}

  /** Refreshes our heartbeat, drops silent nodes, and returns the live node ids, sorted. */
  async heartbeat(connections: number): Promise<string[]> {
    const { nodeId, nodeTtlMs, info } = this.options;
    const [[, live]] = (await this.redis
      .multi()
      .heartbeatNode(this.keys.nodes, nodeId, nodeTtlMs)
      .hset(this.keys.node(nodeId), { ...info, connections })
      .pexpire(this.keys.node(nodeId), nodeTtlMs * 4)
      .exec()) as [[Error | null, [number, ...string[]]], ...unknown[]];
    return live.slice(1) as string[];
  }

  async announce(type: MeshEvent['type']): Promise<void> {
    const event: MeshEvent = { type, node: this.options.nodeId };
    await this.redis.publish(this.keys.meshChannel, JSON.stringify(event));
  }

  /** Leaves the live set at once (graceful stop) and tells the peers. */
  async leave(): Promise<void> {
    const { nodeId } = this.options;
    await this.redis.multi().zrem(this.keys.nodes, nodeId).del(this.keys.node(nodeId)).exec();
    await this.announce('leave');
  }
}
