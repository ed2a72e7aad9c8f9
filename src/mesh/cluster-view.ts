import { batch, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

/** A live node as operators and clients see it (`thr:node:<id>`, refreshed every heartbeat). */
export interface NodeInfo {
  id: string;
  url: string;
  /** Where clients open their WebSocket: `ws(s)://…/v1/ws`. */
  wsUrl: string;
  connections: number;
  version: string;
  startedAt: number;
  /** Milliseconds since its last heartbeat, by Redis's clock. */
  heartbeatAgeMs: number;
}

export interface ClusterState {
  /** The node answering. */
  node: string;
  nodes: NodeInfo[];
  /** `partitions[n]` is the owner of partition n by this node's ring (null: no live node). */
  partitions: (string | null)[];
  /** Partitions whose lease the answering node holds right now. */
  held: number[];
  /** One-node sources → the node running each (null: none right now). */
  sources: Record<string, string | null>;
}

/** What the coordinator knows that the view needs. */
export interface MeshState {
  readonly view: { live: readonly string[]; owners: (string | undefined)[] };
  readonly ownedPartitions: number[];
}

/** `GET /v1/cluster` and `GET /v1/connect` (DESIGN §5). */
export class ClusterView {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly nodeId: string,
    private readonly mesh: MeshState,
    private readonly sources: () => Promise<Record<string, string | null>> = async () => ({}),
  ) {}

  async state(): Promise<ClusterState> {
    const { live, owners } = this.mesh.view;
    return {
      node: this.nodeId,
      nodes: await this.nodes(live),
      partitions: owners.map((o) => o ?? null),
      held: this.mesh.ownedPartitions,
      sources: await this.sources(),
    };
  }

  /**
   * The live node with the fewest WebSocket connections, counting the clients sent there
   * since its last heartbeat (`assigned`), so a burst of clients spreads evenly instead of
   * all going to the node that was least loaded half a second ago.
   */
  async leastLoaded(): Promise<NodeInfo | undefined> {
    const nodes = await this.nodes(this.mesh.view.live, true);
    let best: (NodeInfo & { assigned: number }) | undefined;
    for (const n of nodes) {
      if (!best || n.connections + n.assigned < best.connections + best.assigned) best = n;
    }
    if (!best) return undefined;
    const key = this.keys.node(best.id);
    // Should the node have left just now, the hash this creates must not stay forever.
    await this.redis.multi().hincrby(key, 'assigned', 1).pexpire(key, 60_000, 'NX').exec();
    const { assigned: _, ...info } = best;
    return info;
  }

  private async nodes(live: readonly string[]): Promise<NodeInfo[]>;
  private async nodes(
    live: readonly string[],
    withAssigned: true,
  ): Promise<(NodeInfo & { assigned: number })[]>;
  private async nodes(live: readonly string[], withAssigned = false) {
    const pipe = batch(this.redis).time();
    for (const id of live) pipe.hgetall(this.keys.node(id)).zscore(this.keys.nodes, id);
    const results = (await pipe.exec()) ?? [];
    // A failed TIME (Redis unavailable) is the app's to map (503), not a crash here.
    const [timeErr, time] = results[0] ?? [new Error('no reply to TIME')];
    if (timeErr) throw timeErr;
    const [sec, usec] = time as [string, string];
    const now = Number(sec) * 1000 + Math.floor(Number(usec) / 1000);
    const nodes: (NodeInfo & { assigned?: number })[] = [];
    live.forEach((id, i) => {
      const info = results[1 + 2 * i]?.[1] as Record<string, string> | undefined;
      const beat = results[2 + 2 * i]?.[1] as string | null | undefined;
      // Left between the ring and this read: not live any more.
      if (!info?.url || beat == null) return;
      nodes.push({
        id,
        url: info.url,
        wsUrl: `${info.url.replace(/^http/, 'ws').replace(/\/$/, '')}/v1/ws`,
        connections: Number(info.connections ?? 0),
        version: info.version ?? '',
        startedAt: Number(info.startedAt ?? 0),
        heartbeatAgeMs: Math.max(0, now - Number(beat)),
        ...(withAssigned ? { assigned: Number(info.assigned ?? 0) } : {}),
      });
    });
    return nodes;
  }
}
