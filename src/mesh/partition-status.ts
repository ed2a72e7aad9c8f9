import { batch, type RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import { RELAY_GROUP } from '../funnel/funnel.ts';

/** One partition as Redis has it: who holds its lease, and how far its owner is behind. */
export interface PartitionStatus {
  partition: number;
  /** The node whose lease it is, null when none (expired, or not taken yet). */
  holder: string | null;
  /** Milliseconds since the lease was last taken or renewed (ttl minus what is left of it). */
  leaseAgeMs: number | null;
  /** Funnel entries not yet read by the relay group (XINFO GROUPS `lag`). */
  lag: number | null;
  /** Entries read but not yet acknowledged. */
  pending: number | null;
}

/**
 * The lease and funnel lag of every partition, for `GET /v1/cluster` (the console's mesh
 * view): read from Redis, so any node answers for all partitions, not only the ones it holds.
 */
export async function partitionStatus(
  redis: RedisClient,
  keys: Keys,
  leaseTtlMs: number,
): Promise<PartitionStatus[]> {
  const pipe = batch(redis);
  for (let p = 0; p < keys.partitions; p++)
    pipe.get(keys.lease(p)).pttl(keys.lease(p)).xinfo('GROUPS', keys.funnel(p));
  const replies = (await pipe.exec()) ?? [];
  return Array.from({ length: keys.partitions }, (_, p) => {
    const [lease, ttl, groups] = [0, 1, 2].map((i) => replies[3 * p + i]?.[1]);
    const group = (Array.isArray(groups) ? (groups as unknown[][]) : [])
      .map(fieldsOf)
      .find((g) => g.name === RELAY_GROUP);
    const holder = typeof lease === 'string' ? lease.slice(0, lease.lastIndexOf(':')) : null;
    return {
      partition: p,
      holder,
      leaseAgeMs: holder && typeof ttl === 'number' && ttl >= 0 ? leaseTtlMs - ttl : null,
      lag: typeof group?.lag === 'number' ? group.lag : null,
      pending: typeof group?.pending === 'number' ? group.pending : null,
    };
  });
}

function fieldsOf(flat: unknown[]): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[String(flat[i])] = flat[i + 1];
  return fields;
}
