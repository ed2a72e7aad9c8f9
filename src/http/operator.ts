import { DeadLetters } from '../funnel/dead-letters.ts';
import { partitionStatus, type PartitionStatus } from '../mesh/partition-status.ts';
import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';

/** What the console needs beyond the API every node serves: dead letters and partition status. */
export interface OperatorDeps {
  deadLetters: DeadLetters;
  partitions(): Promise<PartitionStatus[]>;
}

export function operatorDeps(redis: RedisClient, keys: Keys, leaseTtlMs: number): OperatorDeps {
  return {
    deadLetters: new DeadLetters(redis, keys),
    partitions: () => partitionStatus(redis, keys, leaseTtlMs),
  };
}
