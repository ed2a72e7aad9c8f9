/**
 * Every error Threshold raises on purpose. Each has a stable `code` (used in problem+json
 * `type`, WebSocket `error` frames and logs), an HTTP status, and keeps its `cause`.
 */
export class ThresholdError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(code: string, status: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ThresholdError';
    this.code = code;
    this.status = status;
  }
}

export class ConfigError extends ThresholdError {
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super('invalid_config', 500, message);
    this.name = 'ConfigError';
  }
}

export class ValidationError extends ThresholdError {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super('invalid_request', 400, message);
    this.name = 'ValidationError';
  }
}

/** A room's validator refused the message (DESIGN §7); `message` is its reason. */
export class RejectedError extends ThresholdError {
  constructor(
    message: string,
    readonly validator: string,
  ) {
    super('rejected', 400, message);
    this.name = 'RejectedError';
  }
}

export class UnauthorizedError extends ThresholdError {
  constructor(message = 'missing or invalid credentials') {
    super('unauthorized', 401, message);
    this.name = 'UnauthorizedError';
  }
}

export class ForbiddenError extends ThresholdError {
  constructor(message: string) {
    super('forbidden', 403, message);
    this.name = 'ForbiddenError';
  }
}

export class NotFoundError extends ThresholdError {
  constructor(message: string) {
    super('not_found', 404, message);
    this.name = 'NotFoundError';
  }
}

/** 409; `code` names the conflict when a client may act on it (`already_connected`). */
export class ConflictError extends ThresholdError {
  constructor(message: string, code = 'conflict') {
    super(code, 409, message);
    this.name = 'ConflictError';
  }
}

export class PayloadTooLargeError extends ThresholdError {
  constructor(limit: number) {
    super('payload_too_large', 413, `request body is larger than the limit of ${limit} bytes`);
    this.name = 'PayloadTooLargeError';
  }
}

/**
 * Over a limit (publish rate, connections): 429 with `Retry-After`. `retryAfterMs` says when
 * the client may try again; `code` says which limit (`rate_limited`, `too_many_connections`).
 */
export class RateLimitedError extends ThresholdError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
    code = 'rate_limited',
  ) {
    super(code, 429, message);
    this.name = 'RateLimitedError';
  }
}

/** A sign-in code that is wrong, expired, or was never sent: one answer for all three. */
export class InvalidCodeError extends ThresholdError {
  constructor() {
    super(
      'invalid_code',
      401,
      'wrong or expired code; ask for a new one if it is older than 10 minutes',
    );
    this.name = 'InvalidCodeError';
  }
}

/** What a client refused a connection is told to wait: slots free up as others close, at no set time. */
const CONNECTION_RETRY_AFTER_MS = 5_000;

/** A WebSocket upgrade over a per-node connection cap (per peer address or per member). */
export class ConnectionLimitError extends RateLimitedError {
  constructor(
    message: string,
    /** Which cap, as counted in `threshold_websocket_refused_total{reason}`. */
    readonly limit: 'ip_limit' | 'member_limit',
  ) {
    super(message, CONNECTION_RETRY_AFTER_MS, 'too_many_connections');
    this.name = 'ConnectionLimitError';
  }
}

/** Redis or the mesh cannot take the request right now; the client should retry. */
export class UnavailableError extends ThresholdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('unavailable', 503, message, options);
    this.name = 'UnavailableError';
  }
}

export class TimeoutError extends ThresholdError {
  constructor(message: string) {
    super('timeout', 504, message);
    this.name = 'TimeoutError';
  }
}

/** The commit script refused: this node no longer holds the partition's lease. */
export class FencedError extends ThresholdError {
  constructor(partition: number) {
    super('fenced', 409, `partition ${partition}: lease lost, commit refused`);
    this.name = 'FencedError';
  }
}

/** The deployment was created with another partition count; P cannot change. */
export class PartitionMismatchError extends ThresholdError {
  constructor(stored: number, configured: number) {
    super(
      'partition_mismatch',
      500,
      `this Redis holds a deployment with ${stored} partitions but the node was started with ${configured}; ` +
        `the partition count is fixed for the life of a deployment: start the node with THRESHOLD_PARTITIONS=${stored} ` +
        '(or use a fresh Redis / key prefix)',
    );
    this.name = 'PartitionMismatchError';
  }
}

/** No `redis-server` to start for a node without a Redis URL. */
export class RedisNotInstalledError extends ThresholdError {
  constructor(binary: string, cause: unknown) {
    super(
      'redis_not_installed',
      500,
      `Redis is not installed: could not run "${binary}". Install Redis ` +
        '(for example `apt-get install redis-server` or `brew install redis`), ' +
        'or point Threshold at a running server with THRESHOLD_REDIS_URL=redis://host:6379.',
      { cause },
    );
    this.name = 'RedisNotInstalledError';
  }
}

/** The local `redis-server` did not come up; `log` holds its last words. */
export class EmbeddedRedisStartError extends ThresholdError {
  constructor(
    message: string,
    /** The last lines redis-server printed, which usually say why. */
    readonly log: string,
    cause?: unknown,
  ) {
    super(
      'embedded_redis_start_failed',
      500,
      log ? `${message}\n--- redis-server output (tail) ---\n${log}` : message,
      { cause },
    );
    this.name = 'EmbeddedRedisStartError';
  }
}

// MOVED and ASK reach us during a Redis Cluster failover: ioredis follows them for a command
// alone, but an auto-pipelined batch holding commands of several slots gets one per slot and
// hands them out (https://github.com/redis/ioredis/issues/2075). Nothing ran; send it again.
const UNAVAILABLE_REPLY =
  /(^|[\s:-])(OOM|BUSY|LOADING|READONLY|MISCONF|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|NOREPLICAS|MOVED|ASK)\s/;
const UNAVAILABLE_CONNECTION =
  /Connection is closed|Stream isn't writeable|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|Command timed out|enableOfflineQueue|Too many Cluster redirections/;

/**
 * True when a Redis error says "not now" rather than "never": the server is out of memory,
 * loading, busy or read-only, or the connection is down. Such failures are retried without
 * limit (nothing accepted may be dropped for them) and answered with 503 over HTTP.
 */
export function isRedisUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'MaxRetriesPerRequestError') return true;
  return UNAVAILABLE_REPLY.test(err.message) || UNAVAILABLE_CONNECTION.test(err.message);
}

/**
 * How far a failed send got: Twilio answered (`httpStatus` says how), the request never reached
 * Twilio (connection refused, DNS), or nobody knows (a timeout or a reset after the request was
 * written: Twilio may have accepted the text).
 */
export type SmsReach = 'answered' | 'unreached' | 'ambiguous';

/** Twilio refused a text, or could not be reached; `reach`, `httpStatus` and `twilioCode` say which. */
export class SmsSendError extends ThresholdError {
  constructor(
    message: string,
    /** HTTP status of Twilio's answer; undefined when there was none (network, timeout). */
    readonly httpStatus: number | undefined,
    /** Twilio's error code (21610 unsubscribed, 21211 invalid number, 20429 too many requests…). */
    readonly twilioCode: number | undefined,
    options?: { cause?: unknown; reach?: SmsReach; retryAfterMs?: number },
  ) {
    super('sms_send_failed', 502, message, options);
    this.name = 'SmsSendError';
    this.reach = options?.reach ?? (httpStatus === undefined ? 'ambiguous' : 'answered');
    this.retryAfterMs = options?.retryAfterMs;
  }

  readonly reach: SmsReach;
  /** Twilio's `Retry-After` (a 429 or 503), in ms, when it sent one. */
  readonly retryAfterMs: number | undefined;
}
