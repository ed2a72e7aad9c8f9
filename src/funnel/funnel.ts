import { batch, isCluster, type RedisClient } from '../redis/client.ts';
import {
  ForbiddenError,
  NotFoundError,
  PartitionMismatchError,
  UnavailableError,
  ValidationError,
  isRedisUnavailable,
} from '../errors.ts';
import type { Published, Publisher } from '../ingress/publisher.ts';
import { Code } from '../redis/codes.ts';
import type { Keys } from '../redis/keys.ts';
import { type Envelope, memberIdOf, relayBodyLimit, relayPrefix } from './envelope.ts';

export const RELAY_GROUP = 'relay';
export const SCHEMA_VERSION = 1;

export interface FunnelOptions {
  /** Entries a partition may hold before ingress answers 503 (0 = no limit). @default 0 */
  maxLength: number;
  /** Longest body, in characters, a room with phone numbers takes (0 = no limit). @default 0 */
  maxSmsBodyChars?: number;
}

/** The ingress side of the funnel: the Publisher every source writes through. */
export class Funnel implements Publisher {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: FunnelOptions = { maxLength: 0 },
  ) {}

  async publish(envelope: Envelope): Promise<Published> {
    const { keys } = this;
    const p = keys.partitionOf(envelope.room);
    let result: string | number | [2, number];
    try {
      result = await this.redis.publishEnvelope(
        keys.room(envelope.room),
        keys.members(envelope.room),
        keys.funnel(p),
        keys.seen(p, envelope.id),
        memberIdOf(envelope.sender),
        JSON.stringify(envelope),
        this.options.maxLength,
        this.options.maxSmsBodyChars ?? 0,
        // Phones get "<sender>: <body>": the prefix counts (a service's is the room's name,
        // which the script adds).
        [...envelope.body].length + [...relayPrefix(envelope.sender, '')].length,
        envelope.sender.kind === 'service' ? 1 : 0,
        // On a Redis Cluster the partition's owner waits for a wake-up, not an XREAD BLOCK.
        isCluster(this.redis) ? 1 : 0,
      );
    } catch (err) {
      // Only an outage is the client's cue to retry; anything else is our bug and a 500.
      if (!isRedisUnavailable(err)) throw err;
      throw new UnavailableError('the message could not be stored (Redis unavailable); retry', {
        cause: err,
      });
    }
    if (Array.isArray(result)) return { duplicateOf: result[1] };
    if (result === Code.NO_ROOM) throw new NotFoundError(`room ${envelope.room} does not exist`);
    if (result === Code.NOT_MEMBER)
      throw new ForbiddenError(
        `${memberIdOf(envelope.sender)} is not a member of room ${envelope.room}`,
      );
    if (result === Code.TOO_LONG) {
      const max = this.options.maxSmsBodyChars ?? 0;
      throw new ValidationError(
        envelope.sender.kind === 'service'
          ? `body: too long for a room with phone numbers: phones get "<room name>: <body>", at most ${max} characters (one SMS/MMS)`
          : `body: at most ${relayBodyLimit(envelope.sender, '', max)} characters from ${envelope.sender.id} in a room with phone numbers: phones get "${relayPrefix(envelope.sender, '')}<body>", at most ${max} characters (one SMS/MMS)`,
        'body',
      );
    }
    if (result === Code.FUNNEL_FULL)
      throw new UnavailableError(`room ${envelope.room}'s funnel partition is full; retry later`);
    return { entryId: String(result) };
  }
}

/**
 * Makes sure this Redis holds a deployment with our partition count (fixed for its life)
 * and that every partition stream has its consumer group.
 */
export async function prepareFunnel(redis: RedisClient, keys: Keys): Promise<void> {
  await redis.hsetnx(keys.meta, 'partitions', keys.partitions);
  await redis.hsetnx(keys.meta, 'schema', SCHEMA_VERSION);
  const stored = Number(await redis.hget(keys.meta, 'partitions'));
  if (stored !== keys.partitions) throw new PartitionMismatchError(stored, keys.partitions);

  const pipe = batch(redis);
  for (let p = 0; p < keys.partitions; p++) {
    pipe.xgroup('CREATE', keys.funnel(p), RELAY_GROUP, '0', 'MKSTREAM');
  }
  const results = (await pipe.exec()) ?? [];
  for (const [err] of results) {
    if (err && !String(err.message).includes('BUSYGROUP')) throw err;
  }
}
