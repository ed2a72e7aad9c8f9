import type { Config } from '../config.ts';
import type { Receipts } from '../delivery/receipts.ts';
import { SMS_MAX_BODY_CHARS } from '../delivery/sms-plan.ts';
import { Funnel } from '../funnel/funnel.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { RedisClient } from '../redis/client.ts';
import type { Keys } from '../redis/keys.ts';
import type { RoomsStore } from '../rooms/store.ts';
import { Ingress } from './ingress.ts';
import { PublishRateLimiter } from './rate-limit.ts';
import { createValidators, RoomValidators } from './validators.ts';

export interface IngressDeps {
  nodeId: string;
  redis: RedisClient;
  /** The connection funnel writes go on (its own when replica WAITs are on). */
  funnelWrites: RedisClient;
  keys: Keys;
  receipts: Receipts;
  rooms: Pick<RoomsStore, 'get'>;
  metrics: Metrics;
  log: Logger;
}

/**
 * The way in (DESIGN §1): the funnel, the publish rate limit and the rooms' validators in
 * front of it, as every source (HTTP, WebSocket, SMS, plug-ins) submits through.
 */
export async function createIngress(config: Config, deps: IngressDeps) {
  const { keys, metrics, log } = deps;
  const replicaWait = { replicas: config.redisReplicaWait, timeoutMs: config.redisReplicaWaitMs };
  const funnel = new Funnel(deps.funnelWrites, keys, {
    maxLength: config.mesh.maxFunnelLength,
    maxSmsBodyChars: SMS_MAX_BODY_CHARS,
    replicaWait,
  });
  const validators = await createValidators(config.validators, log);
  const ingress = new Ingress(
    funnel,
    deps.receipts,
    metrics,
    { nodeId: deps.nodeId, receiptTimeoutMs: config.http.waitTimeoutMs },
    new PublishRateLimiter(
      deps.redis,
      keys,
      metrics,
      { perSecond: config.rateLimit.publishPerSecond, burst: config.rateLimit.publishBurst },
      log,
    ),
    new RoomValidators(
      validators,
      async (room) => (await deps.rooms.get(room))?.settings.validators ?? [],
    ),
  );
  return { ingress, validators, replicaWait };
}
