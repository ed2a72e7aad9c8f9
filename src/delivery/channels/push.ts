import webpush from 'web-push';
import type { ChannelContext, ChannelJob, ChannelMessage, SendOutcome } from '../channel.ts';
import type { PushSubscription, VapidKeys } from '../push-subscriptions.ts';
import { parseRetryAfter } from '../retry-policy.ts';

/**
 * The most plaintext one aes128gcm record of a 4096-byte push message holds (RFC 8291 §4:
 * 4096 − 86 header − 16 tag − 1 padding delimiter).
 */
export const MAX_PUSH_PAYLOAD_BYTES = 3993;

/** What the channel needs of the subscription store (`PushSubscriptions`). */
export interface PushSubscriptionStore {
  list(member: string): Promise<PushSubscription[]>;
  remove(member: string, endpoint: string): Promise<boolean>;
}

export interface PushChannelDeps {
  subscriptions: PushSubscriptionStore;
  vapid: VapidKeys;
  /** The VAPID `sub` claim: `mailto:` or `https:`. */
  subject: string;
  /** How long the push service keeps it for an offline device (`TTL` header), seconds. */
  ttlSeconds: number;
  /** How long one request to a push service may take; a timeout is retried. */
  timeoutMs: number;
  /** @default globalThis.fetch */
  fetch?: typeof globalThis.fetch;
  /** @default Date.now */
  now?: () => number;
}

type Attempt =
  | { kind: 'sent' }
  | { kind: 'gone'; code: string }
  | { kind: 'retry'; code: string; error: string; retryAfterMs?: number; ambiguous?: boolean }
  | { kind: 'failed'; code: string; error: string };

/**
 * The built-in Web Push channel: a job names it (`ch` = `push`, `to` = `user:<id>`) and the
 * message goes, encrypted (aes128gcm) and signed (VAPID), to every subscription the member
 * registered. It is never routed by member-id prefix at commit (`user:` members get the live
 * WebSocket path): the notification side decides who gets a push.
 *
 * web-push builds each request (`generateRequestDetails`) and fetch sends it, rather than its
 * `sendNotification`: that one speaks https only, and a local push service (tests,
 * development) is plain http; fetch also stops with the node.
 */
export function createPushChannel(ctx: ChannelContext, deps: PushChannelDeps) {
  const { subscriptions, timeoutMs } = deps;
  const fetch = deps.fetch ?? globalThis.fetch;
  const now = deps.now ?? Date.now;
  const vapidDetails = { subject: deps.subject, ...deps.vapid };

  async function send(
    job: ChannelJob & { fields?: Readonly<Record<string, string | undefined>> },
  ): Promise<SendOutcome> {
    let subs: PushSubscription[];
    try {
      subs = await subscriptions.list(job.member);
    } catch (err) {
      return { status: 'retry', error: `reading push subscriptions: ${(err as Error).message}` };
    }
    if (subs.length === 0) {
      // Not an error anyone must act on: a fallback channel moves on.
      return {
        status: 'failed',
        outcome: 'skipped',
        code: 'no_subscription',
        error: `${job.member} has no push subscription`,
      };
    }
    const payload = pushPayload(job.room, job.message, job.fields?.data);
    const urgency = URGENCY[job.fields?.priority ?? ''] ?? 'normal';
    const attempts = await Promise.all(
      subs.map((sub) => attempt(job.member, sub, payload, urgency)),
    );

    if (attempts.some((a) => a.kind === 'sent')) return { status: 'sent' };
    const retries = attempts.filter((a) => a.kind === 'retry');
    const first = retries[0];
    if (first) {
      const after = retries.map((r) => r.retryAfterMs ?? 0);
      return {
        status: 'retry',
        code: first.code,
        error: first.error,
        ...(Math.max(...after) > 0 ? { retryAfterMs: Math.max(...after) } : {}),
        ...(retries.some((r) => r.ambiguous) ? { ambiguous: true } : {}),
      };
    }
    const failed = attempts.find((a) => a.kind === 'failed');
    if (failed) return { status: 'failed', code: failed.code, error: failed.error };
    // Every subscription was gone (and is removed now).
    const gone = attempts.find((a) => a.kind === 'gone');
    return {
      status: 'failed',
      code: gone?.code ?? 'gone',
      error: `every push subscription of ${job.member} is gone (404/410); removed`,
    };
  }

  async function attempt(
    member: string,
    sub: PushSubscription,
    payload: string,
    urgency: webpush.Urgency,
  ): Promise<Attempt> {
    let origin: string;
    let request: webpush.RequestDetails;
    try {
      origin = new URL(sub.endpoint).origin;
      request = webpush.generateRequestDetails(
        { endpoint: sub.endpoint, keys: { p256dh: sub.p256dh, auth: sub.auth } },
        payload,
        { vapidDetails, TTL: deps.ttlSeconds, urgency, contentEncoding: 'aes128gcm' },
      );
    } catch (err) {
      // Keys the browser gave us that cannot be encrypted for (checked at PUT; older data).
      return { kind: 'failed', code: 'invalid_subscription', error: (err as Error).message };
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(request.headers)) {
      // fetch computes it from the body.
      if (name.toLowerCase() !== 'content-length') headers[name] = String(value);
    }
    // A timer of our own, not AbortSignal.timeout(): see the webhook channel.
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new DOMException('timed out', 'TimeoutError')),
      timeoutMs,
    );
    let res: Response;
    try {
      res = await fetch(request.endpoint, {
        method: 'POST',
        headers,
        body: request.body,
        redirect: 'manual',
        signal: AbortSignal.any([timeout.signal, ctx.signal]),
      });
      await res.body?.cancel().catch(() => undefined);
    } catch (err) {
      if (ctx.signal.aborted)
        return { kind: 'retry', code: 'stopping', error: 'the node is stopping' };
      if ((err as Error).name === 'TimeoutError')
        return {
          kind: 'retry',
          code: 'timeout',
          error: `push service ${origin}: no answer within ${timeoutMs} ms`,
          ambiguous: true,
        };
      return {
        kind: 'retry',
        code: 'unreached',
        error: `push service ${origin}: cannot reach it: ${reason(err)}`,
      };
    } finally {
      clearTimeout(timer);
    }

    const { status } = res;
    if (status >= 200 && status < 300) return { kind: 'sent' };
    if (status === 404 || status === 410) {
      ctx.log.info(
        { member, pushService: origin, status },
        'push subscription expired or unsubscribed; removed',
      );
      try {
        await subscriptions.remove(member, sub.endpoint);
      } catch (err) {
        ctx.log.error({ err, member }, 'could not remove a push subscription that is gone');
      }
      return { kind: 'gone', code: String(status) };
    }
    if (status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), now());
      return {
        kind: 'retry',
        code: String(status),
        error: `push service ${origin}: HTTP ${status}`,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      };
    }
    return {
      kind: 'failed',
      code: String(status),
      error: `push service ${origin}: HTTP ${status}`,
    };
  }

  return { prefix: 'user', send };
}

const URGENCY: Record<string, webpush.Urgency> = { high: 'high', low: 'low' };

/**
 * What the service worker gets: `{type, id, room, body, sender, data?, ts}`, kept within one
 * push record: the body is cut (with an ellipsis) to fit, and `data` (a job field, JSON) is
 * left out when even an empty body would not fit with it.
 */
export function pushPayload(room: string, m: ChannelMessage, data?: string): string {
  const base = {
    type: m.kind === 'notification' ? 'notification' : 'message',
    id: m.id,
    room,
    body: m.body,
    sender: m.sender,
    ...(data ? { data: parseData(data) } : {}),
    ts: m.ts,
  };
  const fits = (p: object) => Buffer.byteLength(JSON.stringify(p)) <= MAX_PUSH_PAYLOAD_BYTES;
  if (fits(base)) return JSON.stringify(base);
  const withBody = (body: string) => ({ ...base, body });
  let frame: object = base;
  if (!fits(withBody('…'))) {
    const { data: _dropped, ...rest } = base as typeof base & { data?: unknown };
    frame = rest;
    if (fits(frame)) return JSON.stringify(frame);
  }
  // The longest prefix of the body (whole code points) that fits with its ellipsis.
  const points = Array.from(m.body);
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits({ ...frame, body: `${points.slice(0, mid).join('')}…` })) lo = mid;
    else hi = mid - 1;
  }
  return JSON.stringify({ ...frame, body: `${points.slice(0, lo).join('')}…` });
}

function parseData(data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

function reason(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? err.message;
}
