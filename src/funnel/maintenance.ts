import { batch, type RedisClient } from '../redis/client.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Keys } from '../redis/keys.ts';
import { RELAY_GROUP } from './funnel.ts';

/**
 * Periodically trims each owned funnel partition below its oldest unacknowledged entry
 * (never before), and publishes its lag and pending count as metrics.
 */
export class FunnelMaintenance {
  private timer: NodeJS.Timeout | undefined;
  private reported = new Set<number>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly metrics: Metrics,
    private readonly owned: () => number[],
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.run(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  async run(): Promise<void> {
    const partitions = this.owned();
    for (const p of this.reported) {
      if (!partitions.includes(p)) {
        this.metrics.funnelLag.remove({ partition: String(p) });
        this.metrics.funnelPending.remove({ partition: String(p) });
      }
    }
    this.reported = new Set(partitions);
    if (partitions.length === 0) return;
    const pipe = batch(this.redis);
    for (const p of partitions) pipe.trimFunnel(this.keys.funnel(p), RELAY_GROUP);
    try {
      const results = (await pipe.exec()) ?? [];
      partitions.forEach((p, i) => {
        const [err, reply] = results[i] ?? [];
        if (err || !reply) return;
        const [, pending, lag] = reply as [number, number, number];
        this.metrics.funnelPending.set({ partition: String(p) }, pending);
        if (lag >= 0) this.metrics.funnelLag.set({ partition: String(p) }, lag);
      });
    } catch (err) {
      this.log.warn({ err }, 'funnel maintenance failed (is Redis reachable?)');
    }
  }
}
