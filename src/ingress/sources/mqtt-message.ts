import { z } from 'zod';

/* The MQTT source's options and payloads (mqtt.ts sends; this says what it takes). */

export interface MqttSourceOptions {
  /**
   * The broker (`mqtt://`, `mqtts://`, `ws://`, `wss://`). Credentials belong in
   * `username`/`password`: the URL is logged.
   * @default 'mqtt://127.0.0.1:1883'
   */
  url?: string;
  /**
   * The subscription. Its first `+` level is the room; `#` is refused (a room is one level).
   * @default 'threshold/rooms/+/messages'
   */
  topic?: string;
  /**
   * Subscription QoS: 1 (at-least-once from the broker, acknowledged after the funnel has the
   * message) or 0 (fire and forget: nothing is kept or redelivered). QoS 2 is refused:
   * mqtt.js completes its handshake before the message reaches Threshold.
   * @default 1
   */
  qos?: 0 | 1;
  /**
   * The MQTT client id, which names the broker's persistent session: keep it stable, and
   * unique per broker (two clients with one id disconnect each other).
   * @default 'threshold-<source name>'
   */
  clientId?: string;
  username?: string;
  password?: string;
}

export const DEFAULT_MQTT_SOURCE_OPTIONS = {
  url: 'mqtt://127.0.0.1:1883',
  topic: 'threshold/rooms/+/messages',
  qos: 1,
} as const satisfies MqttSourceOptions;

export const optionsSchema = z.strictObject({
  url: z
    .string()
    .regex(/^(mqtts?|tcp|tls|wss?):\/\/[^/]/, 'an mqtt://, mqtts://, ws:// or wss:// URL')
    .default(DEFAULT_MQTT_SOURCE_OPTIONS.url),
  topic: z
    .string()
    .default(DEFAULT_MQTT_SOURCE_OPTIONS.topic)
    .superRefine((topic, ctx) => {
      const problem = topicProblem(topic);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  qos: z
    .union([z.literal(0), z.literal(1)], {
      error: 'must be 0 or 1 (QoS 2 is acknowledged by mqtt.js before Threshold has the message)',
    })
    .default(DEFAULT_MQTT_SOURCE_OPTIONS.qos),
  clientId: z.string().min(1).max(128).optional(),
  username: z.string().optional(),
  password: z.string().optional(),
});

function topicProblem(topic: string): string | undefined {
  const levels = topic.split('/');
  if (topic.startsWith('$share/')) return 'a shared subscription ($share/…) is not supported';
  if (levels.some((l) => l.includes('#'))) {
    return 'a # wildcard is not supported: the room is the one level that matches +';
  }
  if (levels.some((l) => l.includes('+') && l !== '+')) return '+ must be a whole topic level';
  if (!levels.includes('+')) return 'needs a + level, which names the room';
  return undefined;
}

/** The payload as JSON, when it starts with `{`; any other payload is the body as it is. */
const payloadSchema = z.object({
  body: z.string(),
  id: z.string().min(1).optional(),
  sender: z
    .object({ kind: z.enum(['user', 'phone', 'service']), id: z.string().min(1) })
    .optional(),
  media: z.array(z.string()).optional(),
});

type Payload = z.infer<typeof payloadSchema>;

/**
 * The payload, JSON or plain text. One that starts with `{` is meant as JSON: when it does
 * not parse, or lacks a string `body`, it is dropped with a warning, never relayed as its
 * raw text (a broken producer would otherwise post JSON fragments into a room, without the
 * id that makes it exactly-once). Everything else is the body as it is.
 */
export function parsePayload(
  payload: Buffer | string,
): { ok: true; value: Payload } | { ok: false; reason: string } {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  if (!text.trimStart().startsWith('{')) return { ok: true, value: { body: text } };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'payload starts with { but is not JSON' };
  }
  const result = payloadSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.map(String).join('.') || 'payload';
    return { ok: false, reason: `JSON payload: ${where}: ${issue?.message ?? 'invalid'}` };
  }
  return { ok: true, value: result.data };
}

export /** The URL without a password, for logs and errors. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}
