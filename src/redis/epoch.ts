import type { Redis } from 'ioredis';

/**
 * Counts the connections a client lost. ioredis sends unanswered commands again after it
 * reconnects, so a reply that arrives across a change may answer the second run of a command
 * whose first run took effect too: a fenced read whose first reply was lost leaves entries in
 * our pending list that only a re-read from '0' finds.
 */
export function connectionEpoch(redis: Redis): () => number {
  let epoch = 0;
  redis.on('close', () => {
    epoch++;
  });
  return () => epoch;
}
