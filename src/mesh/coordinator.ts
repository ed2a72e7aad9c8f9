import type { Logger } from '../log.ts';
import { within } from '../within.ts';
import type { Leases } from './leases.ts';
import type { Membership } from './membership.ts';
import type { PartitionConsumer } from './partition-consumer.ts';
import { Ring } from './ring.ts';

export interface CoordinatorOptions {
  nodeId: string;
  partitions: number;
  heartbeatMs: number;
  leaseTtlMs: number;
}

export interface CoordinatorHooks {
  connections(): number;
  onRebalance?(): void;
  /** A ring change is fully applied: we released what we lost and hold what we gained. */
  onHandoff?(handoff: { seconds: number; acquired: number; released: number }): void;
  onTick?(state: { live: string[]; owned: number }): void;
  /**
   * Called for a partition we are about to give up, after its funnel reading stopped and
   * before its lease is released: other work fenced by the lease (the outbox senders)
   * finishes what it has in flight, so the next owner does not do it again.
   */
  beforeRelease?(partition: number): Promise<void>;
}

/**
 * Keeps this node's share of the partitions in line with the ring, every heartbeat and on
 * every membership message: renew what we hold, release what the ring gave away, acquire
 * what it gave us (DESIGN §4).
 */
export class Coordinator {
  /** partition → our lease value */
  private readonly held = new Map<number, string>();
  private ring = new Ring([]);
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** start() was called: membership messages may trigger rounds (see poke). */
  private started = false;
  private lastRenewal = Date.now();
  private lastReclaim = Date.now();
  private isReady = false;
  /** The ring change being applied: when we saw it, and what moved so far. */
  private handoff: { since: number; acquired: number; released: number } | undefined;

  constructor(
    private readonly membership: Membership,
    private readonly leases: Leases,
    /** The funnel's consumer first, then the other readers of our partitions (the outbox). */
    consumers: PartitionConsumer | PartitionConsumer[],
    private readonly options: CoordinatorOptions,
    private readonly hooks: CoordinatorHooks,
    private readonly log: Logger,
  ) {
    this.consumers = Array.isArray(consumers) ? consumers : [consumers];
    for (const consumer of this.consumers)
      consumer.onFenced = (p) => {
        this.held.delete(p);
        this.isReady = false;
      };
  }

  private readonly consumers: PartitionConsumer[];

  private async removeFromConsumers(p: number): Promise<void> {
    for (const c of this.consumers) await c.remove(p);
  }

  /**
   * True once we are in the live set and hold every partition the ring gives us, and only
   * while our leases are fresh (a Redis that stopped answering makes us unready).
   */
  get ready(): boolean {
    return this.isReady && Date.now() - this.lastRenewal < this.options.leaseTtlMs;
  }

  get ownedPartitions(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  /** The live nodes and `owners[n]`, the owner of partition n, as this node sees them. */
  get view(): { live: readonly string[]; owners: (string | undefined)[] } {
    return { live: this.ring.nodes, owners: this.ring.owners(this.options.partitions) };
  }

  /** The live node the ring names for a key (`src:<name>`: a one-node source), if any. */
  ownerOf(key: string): string | undefined {
    return this.ring.ownerOf(key);
  }

  /** partition → our lease value, for work that must be fenced like commits (the outbox). */
  heldLeases(): ReadonlyMap<number, string> {
    return new Map(this.held);
  }

  async start(): Promise<void> {
    this.started = true;
    await this.tick();
    await this.membership.announce('join');
    this.timer = setInterval(() => void this.tick(), this.options.heartbeatMs);
  }

  /**
   * Rebalance now (a peer joined or left), without waiting for the next heartbeat. Not before
   * start(): a round heartbeats this node into the live set, and during start-up that would
   * read as a twin of ours (Membership.assertNoTwin) and take partitions before we are ready.
   */
  poke(): void {
    if (!this.started || this.stopped) return;
    void this.tick();
  }

  /** Runs one round; a round asked for while one is running runs right after it. */
  tick(): Promise<void> {
    if (this.ticking) {
      this.again = true;
      return this.ticking;
    }
    this.ticking = (async () => {
      do {
        this.again = false;
        if (this.stopped) break;
        try {
          await this.round();
        } catch (err) {
          this.onRoundFailure(err);
        }
      } while (this.again);
      this.ticking = undefined;
    })();
    return this.ticking;
  }

  private async round(): Promise<void> {
    const { nodeId, partitions } = this.options;
    const live = await this.membership.heartbeat(this.hooks.connections());
    if (!live.includes(nodeId)) live.push(nodeId);
    const ring = new Ring(live);
    const changed = ring.nodes.join(',') !== this.ring.nodes.join(',');
    this.ring = ring;
    if (changed) this.handoff ??= { since: Date.now(), acquired: 0, released: 0 };
    const desired = new Set(ring.partitionsOf(nodeId, partitions));

    for (const p of await this.leases.renew(this.held)) {
      this.log.warn({ partition: p }, 'lease expired or taken over; stopped reading the partition');
      this.held.delete(p);
      await this.removeFromConsumers(p);
    }
    this.lastRenewal = Date.now();

    const leaving = [...this.held].filter(([p]) => !desired.has(p));
    if (leaving.length > 0) {
      await this.giveUp(leaving);
      if (this.handoff) this.handoff.released += leaving.length;
      // The new owners would otherwise find the leases free only at their next heartbeat.
      await this.membership.announce('released');
    }
    // A partition we hold must be read; re-add any the consumer dropped.
    for (const consumer of this.consumers) {
      const reading = new Set(consumer.partitions);
      for (const [p, value] of this.held) if (!reading.has(p)) await consumer.add(p, value);
    }
    if (Date.now() - this.lastReclaim >= this.options.leaseTtlMs) {
      this.lastReclaim = Date.now();
      // The funnel's: an outbox job may rightly stay pending for long (waiting for a retry).
      await this.consumers[0]?.reclaimIdle(this.options.leaseTtlMs);
    }

    const wanted = [...desired].filter((p) => !this.held.has(p));
    for (const [p, value] of await this.leases.acquire(wanted)) {
      for (const consumer of this.consumers) await consumer.add(p, value);
      this.held.set(p, value);
      if (this.handoff) this.handoff.acquired++;
    }

    const ready = [...desired].every((p) => this.held.has(p));
    if (ready !== this.isReady)
      this.log.info(
        { owned: this.held.size, live: ring.nodes },
        ready ? 'holding all my partitions' : 'waiting for partition leases',
      );
    this.isReady = ready;
    if (changed) {
      this.log.info(
        { live: ring.nodes, owned: this.ownedPartitions.length },
        'membership changed; rebalancing',
      );
      this.hooks.onRebalance?.();
    }
    if (ready && this.handoff) {
      const { since, acquired, released } = this.handoff;
      this.handoff = undefined;
      const seconds = (Date.now() - since) / 1000;
      this.log.info(
        { acquired, released, owned: this.held.size, ms: Math.round(seconds * 1000) },
        'handoff complete',
      );
      this.hooks.onHandoff?.({ seconds, acquired, released });
    }
    this.hooks.onTick?.({ live: [...ring.nodes], owned: this.held.size });
  }

  /**
   * Stops reading the partitions, lets the hooks finish their work in flight (all at once,
   * and for at most half a lease ttl, so the heartbeat and our other leases never wait on a
   * slow Twilio), then releases the leases.
   */
  private async giveUp(partitions: [partition: number, lease: string][]): Promise<void> {
    // Forget them first: should a release fail, the lease simply expires.
    for (const [p] of partitions) {
      this.held.delete(p);
      await this.removeFromConsumers(p);
    }
    const hooks = partitions.map(([p]) => this.hooks.beforeRelease?.(p));
    if ((await within(Promise.allSettled(hooks), this.options.leaseTtlMs / 2)) === 'late')
      this.log.warn(
        { partitions: partitions.map(([p]) => p) },
        'releasing partitions with work still in flight (their next owner reconciles it)',
      );
    for (const [p, value] of partitions) {
      await this.leases
        .release(p, value)
        .catch((err) => this.log.warn({ err, partition: p }, 'could not release lease'));
    }
  }

  private onRoundFailure(err: unknown): void {
    const silentFor = Date.now() - this.lastRenewal;
    this.log.warn({ err, silentFor }, 'mesh heartbeat failed (is Redis reachable?)');
    if (silentFor > this.options.leaseTtlMs && this.held.size > 0) {
      // Our leases have expired by now; another node may own these partitions already.
      this.log.error(
        { partitions: this.ownedPartitions },
        'could not renew leases in time; gave up every partition',
      );
      for (const p of this.held.keys()) void this.removeFromConsumers(p);
      this.held.clear();
      this.isReady = false;
    }
  }

  /** Graceful stop: finish the batch in hand, release every lease, leave the live set. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    await this.giveUp([...this.held]);
    await this.membership
      .leave()
      .catch((err) => this.log.warn({ err }, 'could not leave the mesh cleanly'));
    this.isReady = false;
  }
}
