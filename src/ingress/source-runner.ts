import type { RedisClient } from '../redis/client.ts';
import type { Logger } from '../log.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import type { MessageSource, PublishResult, SourceMessage } from './source.ts';
import type { LoadedSource } from './sources.ts';

export interface SourceRunnerOptions {
  nodeId: string;
  leaseTtlMs: number;
  /** How often leases are renewed and the sources' places checked. */
  heartbeatMs: number;
}

interface Running {
  source: MessageSource;
  abort: AbortController;
  /** Our lease value, for a one-node source. */
  lease?: string;
}

/**
 * Runs the sources (DESIGN §7): every-node ones on this node at once; a one-node source on
 * the node the ring names for it (`src:<name>`), under a lease with a fencing token, like a
 * partition's. When its node dies the lease expires and the ring's next choice takes it;
 * when the ring moves it (a node joined), its holder stops it and lets go first.
 */
export class SourceRunner {
  readonly name = 'sources';
  private readonly running = new Map<string, Running>();
  /** Sources whose start failed: how often in a row, and not to be tried before when. */
  private readonly failed = new Map<string, { times: number; until: number }>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;
  private started = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly sources: readonly LoadedSource[],
    /** The node that should run a named thing now (the ring's choice), if any. */
    private readonly ownerOf: (key: string) => string | undefined,
    private readonly publish: (name: string) => (m: SourceMessage) => Promise<PublishResult>,
    private readonly options: SourceRunnerOptions,
    private readonly log: Logger,
  ) {}

  /** Starts the every-node sources and takes the one-node ones the ring gives us. */
  async start(): Promise<void> {
    this.started = true;
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.options.heartbeatMs);
  }

  /** Stops every source (in reverse), releasing the leases of one-node ones. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.ticking;
    for (const s of [...this.sources].reverse()) await this.halt(s.name);
  }

  /** `GET /v1/cluster`'s `sources`: one-node source → the node holding its lease. */
  async holders(): Promise<Record<string, string | null>> {
    const oneNode = this.sources.filter((s) => s.mode === 'one-node');
    if (oneNode.length === 0) return {};
    // One GET each: every source's lease is in a slot of its own (no MGET on a Redis Cluster).
    const values = await Promise.all(
      oneNode.map((s) => this.redis.get(this.keys.sourceLease(s.name))),
    );
    return Object.fromEntries(
      oneNode.map((s, i) => [s.name, values[i]?.replace(/:\d+$/, '') ?? null]),
    );
  }

  /** A membership change: re-check where the sources belong now (not before start()). */
  poke(): void {
    if (this.started && !this.stopped) void this.tick();
  }

  /** Re-checks where each one-node source belongs (a membership change, a heartbeat). */
  tick(): Promise<void> {
    this.ticking ??= this.round()
      .catch((err: unknown) => this.log.warn({ err }, 'source leases: round failed; retrying'))
      .finally(() => {
        this.ticking = undefined;
      });
    return this.ticking;
  }

  private async round(): Promise<void> {
    for (const s of this.sources) {
      if (this.stopped) break;
      const backingOff = (this.failed.get(s.name)?.until ?? 0) > Date.now();
      if (s.mode === 'every-node') {
        // Started with the node; one whose start failed is tried again after its backoff.
        if (!this.running.has(s.name) && !backingOff) await this.run(s);
        continue;
      }
      const running = this.running.get(s.name);
      const mine = this.ownerOf(`src:${s.name}`) === this.options.nodeId;
      const lease = this.keys.sourceLease(s.name);
      if (running?.lease) {
        const renewed = await this.redis.renewLease(lease, running.lease, this.options.leaseTtlMs);
        if (renewed !== Code.OK) {
          this.log.warn({ source: s.name }, 'source lease lost; stopped the source here');
          await this.halt(s.name, false);
        } else if (!mine) {
          this.log.info(
            { source: s.name },
            'the ring moved the source to another node; handing it over',
          );
          await this.halt(s.name);
        }
        continue;
      }
      if (!mine || backingOff) continue;
      // prettier-ignore
      const value = await this.redis.acquireLease(
        lease, this.keys.sourceLeaseToken(s.name), this.options.nodeId, this.options.leaseTtlMs,
      );
      if (typeof value === 'string') await this.run(s, value);
    }
  }

  private async run(s: LoadedSource, lease?: string): Promise<void> {
    const abort = new AbortController();
    try {
      const source = await s.create({
        name: s.name,
        options: s.options,
        log: this.log.child({ source: s.name }),
        signal: abort.signal,
        publish: this.publish(s.name),
      });
      this.running.set(s.name, lease ? { source, abort, lease } : { source, abort });
      await source.start();
      this.failed.delete(s.name);
      this.log.info({ source: s.name, mode: s.mode }, 'source started');
    } catch (err) {
      // Tried again after 1, 2, 4 … 60 s (a one-node source: here or on another node).
      const times = (this.failed.get(s.name)?.times ?? 0) + 1;
      const waitMs = Math.min(60_000, 1000 * 2 ** (times - 1));
      this.failed.set(s.name, { times, until: Date.now() + waitMs });
      this.log.error({ err, source: s.name, waitMs }, 'source failed to start; trying again later');
      await this.halt(s.name);
    }
  }

  private async halt(name: string, release = true): Promise<void> {
    const running = this.running.get(name);
    if (!running) return;
    this.running.delete(name);
    running.abort.abort();
    try {
      await running.source.stop();
    } catch (err) {
      this.log.warn({ err, source: name }, 'source failed to stop cleanly');
    }
    if (release && running.lease)
      await this.redis
        .releaseLease(this.keys.sourceLease(name), running.lease)
        .catch((err: unknown) =>
          this.log.warn({ err, source: name }, 'could not release source lease'),
        );
  }
}
