import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../redis/client.ts';
import { Webhook } from 'standardwebhooks';
import { ValidationError } from '../errors.ts';
import type { Keys } from '../redis/keys.ts';

/** Webhook endpoint names: the `<name>` of member `webhook:<name>`. */
export const WEBHOOK_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** Standard Webhooks secrets: `whsec_` + base64 of the HMAC key. */
const SECRET = /^whsec_[A-Za-z0-9+/]+={0,2}$/;
/** Key sizes the Standard Webhooks spec recommends (192 to 512 bits). */
const SECRET_MIN_BYTES = 24;
const SECRET_MAX_BYTES = 64;

/** Why `secret` cannot sign webhooks, or undefined when it can. */
export function secretProblem(secret: string): string | undefined {
  if (!SECRET.test(secret)) return 'expected whsec_ followed by base64 (Standard Webhooks)';
  const bytes = Buffer.from(secret.slice('whsec_'.length), 'base64').length;
  if (bytes < SECRET_MIN_BYTES || bytes > SECRET_MAX_BYTES) {
    return `expected a key of ${SECRET_MIN_BYTES} to ${SECRET_MAX_BYTES} bytes, got ${bytes}`;
  }
  try {
    new Webhook(secret);
  } catch (err) {
    return `not a Standard Webhooks secret: ${(err as Error).message}`;
  }
  return undefined;
}

/** A new secret, in the format receivers' Standard Webhooks libraries take as is. */
export function generateSecret(): string {
  return `whsec_${randomBytes(SECRET_MIN_BYTES).toString('base64')}`;
}

/** An endpoint as the admin API shows it: never with its secret. */
export interface WebhookEndpoint {
  name: string;
  url: string;
  disabled: boolean;
  disabledReason?: string;
  /** ms since epoch */
  disabledAt?: number;
  createdAt: number;
  updatedAt: number;
}

/** What the sender needs: where to post and what to sign with. */
export interface ResolvedEndpoint extends WebhookEndpoint {
  secret: string;
}

export interface PutResult {
  created: boolean;
  endpoint: WebhookEndpoint;
  /** The secret, only when this call generated it: the one chance to show it. */
  secret?: string;
}

export interface WebhookEndpointsOptions {
  /**
   * How long the sender's lookups are cached. Edits on other nodes show after at most this
   * long; this node's own edits and disables at once.
   * @default 1000
   */
  cacheTtlMs?: number;
  /** @default Date.now */
  now?: () => number;
}

/**
 * Webhook endpoints, one hash each at `keys.webhook(name)` (url, secret, disabled,
 * disabledReason, disabledAt, createdAt, updatedAt). A hash without `url` counts as no
 * endpoint: `disable()` racing a `delete()` may leave one behind, and the next `put()`
 * starts it afresh.
 */
export class WebhookEndpoints {
  private readonly cache = new Map<string, { at: number; endpoint: ResolvedEndpoint }>();
  private readonly cacheTtlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    options: WebhookEndpointsOptions = {},
  ) {
    this.cacheTtlMs = options.cacheTtlMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  /**
   * Creates or updates an endpoint and enables it. Without `secret`, a new endpoint gets a
   * generated one and an existing endpoint keeps its own. The caller validates `url`; a bad
   * `secret` is a ValidationError.
   */
  async put(name: string, { url, secret }: { url: string; secret?: string }): Promise<PutResult> {
    const problem = secret === undefined ? undefined : secretProblem(secret);
    if (problem) throw new ValidationError(`secret: ${problem}`, 'secret');
    const key = this.keys.webhook(name);
    const now = String(this.now());
    const generated = secret === undefined ? generateSecret() : undefined;
    // One key, one transaction: concurrent puts of the same name cannot both claim "created"
    // nor both install a generated secret.
    const tx = this.redis.multi();
    tx.hsetnx(key, 'createdAt', now);
    if (generated !== undefined) tx.hsetnx(key, 'secret', generated);
    else if (secret !== undefined) tx.hset(key, 'secret', secret);
    tx.hset(key, 'url', url, 'disabled', '0', 'updatedAt', now);
    tx.hdel(key, 'disabledReason', 'disabledAt');
    tx.hgetall(key);
    const results = await exec(tx);
    const created = results[0] === 1;
    const secretSet = generated !== undefined && results[1] === 1;
    const hash = results[results.length - 1] as Record<string, string>;
    this.cache.delete(name);
    const endpoint = toEndpoint(name, hash);
    if (!endpoint) throw new Error(`webhook endpoint ${name} vanished while it was written`);
    const { secret: _stored, ...shown } = endpoint;
    return { created, endpoint: shown, ...(secretSet ? { secret: generated } : {}) };
  }

  /** The endpoint without its secret; undefined when there is none. */
  async get(name: string): Promise<WebhookEndpoint | undefined> {
    const endpoint = toEndpoint(name, await this.redis.hgetall(this.keys.webhook(name)));
    if (!endpoint) return undefined;
    const { secret: _secret, ...shown } = endpoint;
    return shown;
  }

  /** True when there was such an endpoint. */
  async delete(name: string): Promise<boolean> {
    const key = this.keys.webhook(name);
    const results = await exec(this.redis.multi().hget(key, 'url').del(key));
    this.cache.delete(name);
    return results[0] !== null;
  }

  /** Stops deliveries to the endpoint (on this node at once) until the next `put()`. */
  async disable(name: string, reason: string): Promise<void> {
    const at = this.now();
    const cached = this.cache.get(name);
    if (cached) {
      cached.endpoint = {
        ...cached.endpoint,
        disabled: true,
        disabledReason: reason,
        disabledAt: at,
      };
    }
    const key = this.keys.webhook(name);
    await this.redis.hset(key, 'disabled', '1', 'disabledReason', reason, 'disabledAt', String(at));
  }

  /** The sender's lookup, secret included, cached for `cacheTtlMs`. */
  async lookup(name: string): Promise<ResolvedEndpoint | undefined> {
    const cached = this.cache.get(name);
    if (cached && this.now() - cached.at < this.cacheTtlMs) return cached.endpoint;
    const endpoint = toEndpoint(name, await this.redis.hgetall(this.keys.webhook(name)));
    // Unknown names are not cached: an endpoint created a moment ago must be found.
    if (endpoint) this.cache.set(name, { at: this.now(), endpoint });
    else this.cache.delete(name);
    return endpoint;
  }
}

function toEndpoint(name: string, hash: Record<string, string>): ResolvedEndpoint | undefined {
  if (!hash.url || !hash.secret) return undefined;
  const disabled = hash.disabled === '1';
  return {
    name,
    url: hash.url,
    secret: hash.secret,
    disabled,
    ...(disabled && hash.disabledReason !== undefined
      ? { disabledReason: hash.disabledReason }
      : {}),
    ...(disabled && hash.disabledAt !== undefined ? { disabledAt: Number(hash.disabledAt) } : {}),
    createdAt: Number(hash.createdAt),
    updatedAt: Number(hash.updatedAt),
  };
}

/** EXEC's replies, throwing the first command error (ioredis reports them per command). */
async function exec(tx: ReturnType<RedisClient['multi']>): Promise<unknown[]> {
  const replies = await tx.exec();
  if (!replies) throw new Error('transaction aborted');
  return replies.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}
