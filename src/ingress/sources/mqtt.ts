/**
 * The built-in MQTT source (DESIGN §7): subscribes to a topic pattern such as
 * `threshold/rooms/+/messages` and publishes each message to the room named by the level
 * that matched the `+`.
 *
 * Nothing is lost between the broker and the funnel: the session is persistent (`clean:
 * false`, a stable client id) and subscribed with QoS 1, so the broker keeps what arrives
 * while no node is connected, and a message is acknowledged (PUBACK) only once
 * `ctx.publish` resolved, i.e. once the funnel has it. Until then the broker holds it and
 * sends it again on the next connection. A message with an `id` commits exactly once however
 * often it is delivered; one without is at-least-once (see `fallbackIds` below).
 */
import { createHash } from 'node:crypto';
import { connect, type IPublishPacket, type MqttClient } from 'mqtt';
import { ConfigError } from '../../errors.ts';
import { newUlid } from '../../ids.ts';
import type { MessageSource, SourceContext, SourceMessage, SourceMode } from '../source.ts';
import { optionsSchema, parsePayload, redact } from './mqtt-message.ts';

export {
  DEFAULT_MQTT_SOURCE_OPTIONS,
  type MqttSourceOptions,
  parsePayload,
} from './mqtt-message.ts';

/** One MQTT session per deployment: the lease runs it on exactly one node. */
export const mode: SourceMode = 'one-node';

// Codes of ctx.publish that no retry can change: the message is acknowledged and dropped.
const PERMANENT = new Set(['not_found', 'forbidden', 'invalid_request', 'rejected']);
const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 5_000;
const RECONNECT_PERIOD_MS = 1_000;
const END_TIMEOUT_MS = 5_000;
const FALLBACK_IDS_MAX = 1_000;

/**
 * Runs one MQTT session for the source `ctx.name`. Throws a ConfigError naming the option
 * when an option is invalid. `start()` resolves once connected and subscribed, and rejects if
 * that first connection fails (broker unreachable, credentials refused); after that, lost
 * connections are retried every second for as long as the source runs.
 */
export function createMqttSource(ctx: SourceContext): MessageSource {
  const parsed = optionsSchema.safeParse(ctx.options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    if (issue?.code === 'unrecognized_keys') {
      const key = issue.keys[0] ?? '';
      throw new ConfigError(
        `sources.${ctx.name}.options.${key}`,
        `source ${ctx.name}: unknown option ${key} (known: ${Object.keys(optionsSchema.shape).join(', ')})`,
      );
    }
    const key = issue?.path.map(String).join('.') || 'options';
    throw new ConfigError(
      `sources.${ctx.name}.options.${key}`,
      `source ${ctx.name}: invalid option ${key}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const options = parsed.data;
  const clientId = options.clientId ?? `threshold-${ctx.name}`;
  const roomLevel = options.topic.split('/').indexOf('+');
  const url = redact(options.url);
  const log = ctx.log.child({ source: ctx.name, broker: url, topic: options.topic });

  let client: MqttClient | undefined;
  /**
   * One signal per connection (network stream), aborted when it closes: a message is
   * acknowledged only on the connection that brought it. Found from the stream, not from the
   * `connect` event, which mqtt.js may emit after a resumed session's first messages.
   */
  const connections = new WeakMap<object, AbortSignal>();
  function connectionOf(c: MqttClient): AbortSignal {
    const stream = c.stream;
    let signal = connections.get(stream);
    if (!signal) {
      const controller = new AbortController();
      if (stream.destroyed) controller.abort();
      else stream.once('close', () => controller.abort());
      signal = controller.signal;
      connections.set(stream, signal);
    }
    return signal;
  }
  let stopping = new AbortController();
  ctx.signal.addEventListener('abort', () => stopping.abort(), { once: true });
  /**
   * mqtt.js hands over one message at a time per connection; this chain keeps it one at a
   * time across reconnects too, so a redelivery never overtakes a message still in hand.
   */
  let inHand: Promise<void> = Promise.resolve();

  /**
   * Ids for messages without one, by delivery, so that a message whose PUBACK was lost with
   * its connection gets the same id when the broker sends it again (flag `dup`) to this
   * process. Another process (after a crash or a move) cannot know it: such messages are
   * at-least-once. Nothing in MQTT 3.1.1 is stable across sessions (packet ids are reused),
   * and a digest of topic and payload would merge genuine repeats.
   */
  const fallbackIds = new Map<string, string>();

  function fallbackId(packet: IPublishPacket): { id: string; key?: string } {
    if (packet.messageId === undefined) return { id: newUlid() };
    const digest = createHash('sha256').update(packet.payload).digest('base64url');
    const key = `${packet.messageId}\u0000${packet.topic}\u0000${digest}`;
    const known = packet.dup ? fallbackIds.get(key) : undefined;
    const id = known ?? newUlid();
    fallbackIds.delete(key);
    fallbackIds.set(key, id);
    if (fallbackIds.size > FALLBACK_IDS_MAX) {
      const oldest = fallbackIds.keys().next().value;
      if (oldest !== undefined) fallbackIds.delete(oldest);
    }
    return { id, key };
  }

  /** Resolves true when the message is to be acknowledged, false to leave it with the broker. */
  async function handle(packet: IPublishPacket, conn: AbortSignal): Promise<boolean> {
    const meta = { mqttId: packet.messageId, mqttTopic: packet.topic };
    if (packet.retain) {
      // A retained message replayed because we (re)subscribed: state, not a new message.
      // (A retained message published while we are subscribed arrives with retain unset.)
      log.debug(meta, 'mqtt: retained message ignored');
      return true;
    }
    const room = packet.topic.split('/')[roomLevel];
    const payload = parsePayload(packet.payload);
    if (room === undefined || !payload.ok) {
      log.warn(
        { ...meta, reason: payload.ok ? 'no room level' : payload.reason },
        'mqtt: message dropped',
      );
      return true;
    }
    const { body, sender, media } = payload.value;
    let { id } = payload.value;
    let fallbackKey: string | undefined;
    if (id === undefined) ({ id, key: fallbackKey } = fallbackId(packet));
    const message: SourceMessage = {
      room,
      body,
      id,
      ...(sender ? { sender } : {}),
      ...(media ? { media } : {}),
    };
    const done = (): void => {
      if (fallbackKey !== undefined) fallbackIds.delete(fallbackKey);
    };

    /*
     * `unavailable` (or an error without a known code) is retried here, with backoff, rather
     * than left to a redelivery: the broker sends an unacknowledged message again only on a
     * new connection, and mqtt.js would meanwhile hand us the next ones, out of order. Waiting
     * holds the whole session (one message at a time), which is the backpressure we want.
     * While we wait mqtt.js reads no packet, not even a PINGRESP, so an outage longer than
     * 1.5 keepalives (90 s) ends in a reconnect: this attempt is abandoned unacknowledged and
     * the broker's redelivery starts it again.
     */
    for (let attempt = 1; ; attempt++) {
      if (conn.aborted || stopping.signal.aborted) return false;
      try {
        const result = await ctx.publish(message);
        log.debug({ ...meta, room, id: result.id, status: result.status }, 'mqtt: published');
        if (attempt > 1)
          log.info({ ...meta, room, attempts: attempt }, 'mqtt: published after retries');
        // On another connection the packet id may name another message by now: no ack.
        if (conn.aborted) return false;
        done();
        return true;
      } catch (err) {
        const code = errorCode(err);
        const error = err instanceof Error ? err.message : String(err);
        if (code !== undefined && PERMANENT.has(code)) {
          // It can never be accepted: acknowledge it, or it would hold the session forever.
          log.warn(
            { ...meta, room, id: message.id, code, error },
            'mqtt: message refused, dropped',
          );
          done();
          return true;
        }
        if (attempt === 1 || attempt % 10 === 0) {
          const level = code === 'unavailable' ? 'warn' : 'error';
          log[level]({ ...meta, room, code, error, attempt }, 'mqtt: publish failed, retrying');
        }
        await sleep(backoff(attempt), AbortSignal.any([conn, stopping.signal]));
      }
    }
  }

  function subscribe(c: MqttClient): Promise<void> {
    return new Promise((resolve, reject) => {
      c.subscribe(options.topic, { qos: options.qos }, (err, granted) => {
        const qos = granted?.[0]?.qos;
        if (err) return reject(err);
        if (qos === undefined || qos > 2) return reject(new Error('subscription refused'));
        if (qos !== options.qos) log.warn({ granted: qos }, 'mqtt: broker granted another QoS');
        resolve();
      });
    });
  }

  return {
    async start() {
      if (client) return;
      if (ctx.signal.aborted) throw new Error(`source ${ctx.name}: its signal is aborted`);
      if (stopping.signal.aborted) stopping = new AbortController();
      const c = connect(options.url, {
        clientId,
        // MQTT 3.1.1: a session that is not clean lives on the broker until the broker expires
        // it (mosquitto: persistent_client_expiration, never by default). MQTT 5 would need a
        // sessionExpiryInterval for the same.
        protocolVersion: 4,
        clean: false,
        reconnectPeriod: RECONNECT_PERIOD_MS,
        // Refused credentials may be fixed on the broker's side: after the start, keep trying.
        reconnectOnConnackError: true,
        // We subscribe on every connect (below), which is harmless on a resumed session.
        resubscribe: false,
        ...(options.username !== undefined ? { username: options.username } : {}),
        ...(options.password !== undefined ? { password: options.password } : {}),
      });
      client = c;

      // Called by mqtt.js for each QoS 0/1 message, one at a time per connection: the PUBACK
      // goes when we call back without an error. With an error it sends none and reads on;
      // the broker keeps the message in the session and sends it again on the next connection.
      c.handleMessage = (packet, callback) => {
        const conn = connectionOf(c);
        const handled = inHand.then(() => handle(packet, conn));
        inHand = handled.then(
          () => undefined,
          () => undefined,
        );
        void handled.then(
          (ack) => (ack ? callback() : callback(new Error('left with the broker'))),
          (err: unknown) => {
            log.error({ err }, 'mqtt: message handler failed');
            callback(err instanceof Error ? err : new Error(String(err)));
          },
        );
      };

      // Settles start(): the first connection is subscribed, or failed.
      let starting: { resolve: () => void; reject: (err: unknown) => void } | undefined;
      const started = new Promise<void>((resolve, reject) => {
        starting = { resolve, reject };
      });
      const settle = (err?: unknown): void => {
        const s = starting;
        starting = undefined;
        if (err === undefined) s?.resolve();
        else s?.reject(err);
      };

      c.on('connect', (connack) => {
        log.info({ clientId, sessionPresent: connack.sessionPresent }, 'mqtt: connected');
        subscribe(c).then(
          () => {
            log.info({ qos: options.qos }, 'mqtt: subscribed');
            settle();
          },
          (err: unknown) => {
            if (starting) return settle(err);
            log.error({ err }, 'mqtt: subscribe failed; reconnecting');
            setTimeout(() => {
              if (client === c && !stopping.signal.aborted) c.reconnect();
            }, RETRY_MAX_MS);
          },
        );
      });
      c.on('close', () => {
        if (starting) settle(new Error('connection closed'));
        else if (client === c) log.warn('mqtt: connection lost; reconnecting');
      });
      // While the broker is away the same error comes back every second: log it once.
      let lastError = '';
      c.on('connect', () => (lastError = ''));
      c.on('error', (err) => {
        if (starting) return settle(err);
        if (err.message !== lastError) log.warn({ err: err.message }, 'mqtt: client error');
        lastError = err.message;
      });

      try {
        await started;
      } catch (err) {
        client = undefined;
        await end(c, true);
        const why = err instanceof Error ? err.message : String(err);
        throw new Error(`source ${ctx.name}: cannot subscribe at ${url}: ${why}`, { cause: err });
      }
    },

    async stop() {
      stopping.abort();
      const c = client;
      if (!c) return;
      client = undefined;
      // The message in hand finishes its publish (and is acknowledged if it went through);
      // the ones behind it are left with the broker, which keeps them in the session.
      await inHand;
      await end(c, false);
      log.info('mqtt: stopped');
    },
  };
}

/** Ends the client (DISCONNECT; the session stays on the broker), forcibly if it hangs. */
function end(c: MqttClient, force: boolean): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => c.end(true, {}, () => resolve()), END_TIMEOUT_MS);
    c.end(force, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  return typeof err.code === 'string' ? err.code : undefined;
}

/** Exponential, with jitter (50–100 %), from RETRY_BASE_MS up to RETRY_MAX_MS. */
function backoff(attempt: number): number {
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(attempt - 1, 16));
  return Math.round(ceiling * (0.5 + Math.random() / 2));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
