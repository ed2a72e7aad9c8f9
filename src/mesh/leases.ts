import { batch, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

/** Partition leases with fencing tokens (DESIGN §4): `thr:{p<n>}:lease` = `<node>:<token>`. */
export class Leases {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly nodeId: string,
    private readonly ttlMs: number,
  ) {}

  /** Tries to take each partition; returns the lease values of those we got. */
  async acquire(partitions: number[]): Promise<Map<number, string>> {
    const got = new Map<number, string>();
    if (partitions.length === 0) return got;
    const pipe = batch(this.redis);
    for (const p of partitions) {
      pipe.acquireLease(this.keys.lease(p), this.keys.leaseToken(p), this.nodeId, this.ttlMs);
    }
    const results = (await pipe.exec()) ?? [];
    partitions.forEach((p, i) => {
      const [err, value] = results[i] ?? [];
      if (!err && typeof value === 'string') got.set(p, value);
    });
    return got;
  }

  /** Extends every lease we hold; returns the partitions whose lease is no longer ours. */
  async renew(held: ReadonlyMap<number, string>): Promise<number[]> {
    if (held.size === 0) return [];
    const pipe = batch(this.redis);
    for (const [p, value] of held) pipe.renewLease(this.keys.lease(p), value, this.ttlMs);
    const results = (await pipe.exec()) ?? [];
    const lost: number[] = [];
    [...held.keys()].forEach((p, i) => {
      const [err, renewed] = results[i] ?? [];
      if (err) throw err;
      if (renewed !== 1) lost.push(p);
    });
    return lost;
  }

  async release(partition: number, value: string): Promise<void> {
    await this.redis.releaseLease(this.keys.lease(partition), value);
  }
}
