import type { Envelope } from '../funnel/envelope.ts';

/** What one channel decided about one message at commit (commit-batch-n.lua, an entry's plans). */
export interface ChannelPlan {
  /** Member ids of the channel not to deliver to (opted out, invalid): not reached. */
  skip: string[];
  /** Fields added to each of the channel's jobs of the message: [name, value, ...]. */
  f: string[];
  /** Jobs beside the members' (an SMS receipt to the sender); "{recipients}" in a field is
   *  replaced with the number of members the message reaches. */
  extra?: { to: string; kind: string; f: string[] }[];
}

/**
 * A channel that decides at commit time (the SMS channel: the relay text, opt-outs). It is
 * active in a room while the room hash field `gate` is set, and then every commit needs its
 * plan: the script refuses one without (UNPLANNED), and the planner is told to {@link forget}
 * what it remembered of the room.
 */
export interface ChannelPlanner {
  readonly channel: string;
  readonly gate: string;
  plan(envelopes: Envelope[]): Promise<Map<string, ChannelPlan>>;
  forget(room: string): void;
}

/**
 * Every channel's say in a commit, for the committer (its `CommitPlanner`): the routes of
 * member-id prefixes to channels, and the plans of a batch.
 */
export class DeliveryPlanner {
  /** commit-batch-n.lua's ARGV[6]: { prefix: [channel, gate] }; "" is the live path. */
  readonly routes: string;

  constructor(
    /** prefix → channel name, for every outbox channel. */
    channels: ReadonlyMap<string, string>,
    private readonly planners: readonly ChannelPlanner[],
    /** Prefixes delivered over the live path only (`user`). */
    live: readonly string[] = ['user'],
  ) {
    const routes: Record<string, [string, string]> = {};
    for (const prefix of live) routes[prefix] = ['', ''];
    for (const [prefix, channel] of channels) {
      const gate = planners.find((p) => p.channel === channel)?.gate ?? '';
      routes[prefix] = [channel, gate];
    }
    this.routes = JSON.stringify(routes);
  }

  /** envelope id → the plans of its commit, as the script takes them ("" for none). */
  async plan(envelopes: Envelope[]): Promise<Map<string, string>> {
    const byEnvelope = new Map<string, Record<string, ChannelPlan>>();
    // Each planner's reads are a round trip of their own: side by side, not one after another.
    const planned = await Promise.all(this.planners.map((p) => p.plan(envelopes)));
    this.planners.forEach((planner, i) => {
      for (const [id, plan] of planned[i] ?? []) {
        const plans = byEnvelope.get(id) ?? {};
        plans[planner.channel] = plan;
        byEnvelope.set(id, plans);
      }
    });
    return new Map([...byEnvelope].map(([id, plans]) => [id, JSON.stringify(plans)]));
  }

  /** A room's commit came back UNPLANNED: every planner reads it again. */
  forget(room: string): void {
    for (const planner of this.planners) planner.forget(room);
  }
}

/** Rooms remembered at most (then forgotten all at once and relearned). */
const INACTIVE_MAX = 100_000;

/**
 * The rooms a planner found its channel inactive in (no gate field): they are not read again
 * until the commit script says otherwise (UNPLANNED) and the planner forgets them.
 */
export class InactiveRooms {
  private readonly rooms = new Set<string>();

  /** The distinct rooms of these envelopes not known to be inactive. */
  unknown(envelopes: readonly Envelope[]): string[] {
    return [...new Set(envelopes.map((e) => e.room))].filter((r) => !this.rooms.has(r));
  }

  remember(room: string): void {
    if (this.rooms.size >= INACTIVE_MAX) this.rooms.clear();
    this.rooms.add(room);
  }

  forget(room: string): void {
    this.rooms.delete(room);
  }
}
