import type { ChainableCommander } from 'ioredis';
import { batch, isCluster, onConnectionDrop, type RedisClient } from '../redis/client.ts';
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
  /**
   * Replicas that must hold a new entry before publish() resolves (Redis `WAIT`), and how
   * long to wait for them. @default { replicas: 0 } (do not wait)
   */
  replicaWait?: ReplicaWait;
}

/** `redisReplicaWait` and `redisReplicaWaitMs`: a Redis WAIT after a write. */
export interface ReplicaWait {
  replicas: number;
  timeoutMs: number;
}

/** The ingress side of the funnel: the Publisher every source writes through. */
export class Funnel implements Publisher {
  /** Connection drops so far: a WAIT answered across one vouches for nothing. */
  private drops = 0;

  constructor(
    /** With replica waits, a connection of its own: a WAIT holds its connection meanwhile. */
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly options: FunnelOptions = { maxLength: 0 },
  ) {
    if (options.replicaWait?.replicas) onConnectionDrop(redis, () => this.drops++);
  }

  async publish(envelope: Envelope): Promise<Published> {
    const { keys } = this;
    const p = keys.partitionOf(envelope.room);
    const seen = keys.seen(p, envelope.id);
    let result: string | number | [2, number];
    let copied = true;
    try {
      const args: Parameters<RedisClient['publishEnvelope']> = [
        keys.room(envelope.room),
        keys.members(envelope.room),
        keys.funnel(p),
        seen,
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
      ];
      if (!this.options.replicaWait?.replicas) {
        result = await this.redis.publishEnvelope(...args);
      } else {
        const stored = await this.replicated<typeof result>((pipe) =>
          pipe.publishEnvelope(...args),
        );
        ({ reply: result, copied } = stored);
        // Committed before: the commit may not be copied yet (its receipt withheld). Writing
        // its seen marker again (same value, same ttl) after it makes a WAIT vouch for it.
        const seq = Array.isArray(stored.reply) ? stored.reply[1] : undefined;
        if (seq !== undefined)
          ({ copied } = await this.replicated((pipe) =>
            pipe.set(seen, String(seq), 'KEEPTTL', 'XX'),
          ));
      }
    } catch (err) {
      // Only an outage is the client's cue to retry; anything else is our bug and a 500.
      if (!isRedisUnavailable(err)) throw err;
      throw new UnavailableError('the message could not be stored (Redis unavailable); retry', {
        cause: err,
      });
    }
    if (!copied && (Array.isArray(result) || typeof result === 'string')) {
      // Stored, but a failover now could lose it, so the client is not told it was accepted.
      // A retry with the same id is safe: a second entry commits as a duplicate of the first.
      const { replicas, timeoutMs } = this.options.replicaWait as ReplicaWait;
      throw new UnavailableError(
        `the message was stored but not yet copied to ${replicas} Redis ${replicas === 1 ? 'replica' : 'replicas'} within ${timeoutMs} ms; retry with the same id: it will be committed once`,
      );
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

  /**
   * A write and a WAIT right behind it, on the same connection (a pipeline): WAIT answers
   * how many replicas acknowledged everything this connection wrote so far. A cluster
   * pipeline goes to the master of its keys' slot, and the keyless WAIT with it.
   */
  private async replicated<T>(
    write: (pipe: ChainableCommander) => ChainableCommander,
  ): Promise<{ reply: T; copied: boolean }> {
    const { replicas, timeoutMs } = this.options.replicaWait as ReplicaWait;
    const drops = this.drops;
    const replies = await write(this.redis.pipeline()).wait(replicas, timeoutMs).exec();
    const [written, waited] = replies ?? [];
    if (!written || written[0]) throw written?.[0] ?? new Error('no reply from Redis');
    // A failed WAIT (its connection dropped) vouches for nothing: the client retries.
    const copies = waited && !waited[0] && this.drops === drops ? Number(waited[1]) : 0;
    return { reply: written[1] as T, copied: copies >= replicas };
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
