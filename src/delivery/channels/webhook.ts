import { Webhook } from 'standardwebhooks';
import type {
  ChannelContext,
  ChannelJob,
  ChannelMessage,
  DeliveryChannel,
  SendOutcome,
} from '../channel.ts';
import { parseRetryAfter } from '../retry-policy.ts';
import type { ResolvedEndpoint } from '../webhook-endpoints.ts';

export const WEBHOOK_PREFIX = 'webhook';

/** What the channel needs of the endpoint store (`WebhookEndpoints`). */
export interface WebhookEndpointLookup {
  lookup(name: string): Promise<ResolvedEndpoint | undefined>;
  disable(name: string, reason: string): Promise<void>;
}

export interface WebhookChannelDeps {
  endpoints: WebhookEndpointLookup;
  /** How long one POST may take (`webhooks.timeoutMs`); a timeout is retried. */
  timeoutMs: number;
  /** @default globalThis.fetch */
  fetch?: typeof globalThis.fetch;
  /** @default Date.now */
  now?: () => number;
}

/**
 * The built-in webhook channel: member `webhook:<name>` gets each message POSTed, as its
 * WebSocket `message` frame, to endpoint `<name>`'s URL, signed the Standard Webhooks way
 * (`webhook-id` is the delivery id, stable across retries, for the receiver to deduplicate).
 */
export function createWebhookChannel(
  ctx: ChannelContext,
  deps: WebhookChannelDeps,
): DeliveryChannel {
  const { endpoints, timeoutMs } = deps;
  const fetch = deps.fetch ?? globalThis.fetch;
  const now = deps.now ?? Date.now;

  async function send(job: ChannelJob): Promise<SendOutcome> {
    const name = job.member.startsWith(`${WEBHOOK_PREFIX}:`)
      ? job.member.slice(WEBHOOK_PREFIX.length + 1)
      : undefined;
    if (!name) return { status: 'failed', error: `${job.member} is not a webhook member` };

    let endpoint: ResolvedEndpoint | undefined;
    try {
      endpoint = await endpoints.lookup(name);
    } catch (err) {
      return { status: 'retry', error: `looking up webhook endpoint ${name}: ${message(err)}` };
    }
    if (!endpoint) return { status: 'failed', error: `no webhook endpoint ${name}` };
    if (endpoint.disabled) {
      return {
        status: 'failed',
        error: `webhook endpoint ${name} is disabled${endpoint.disabledReason ? ` (${endpoint.disabledReason})` : ''}`,
      };
    }

    const body = messageFrame(job.room, job.message);
    const timestamp = new Date(now());
    let res: Response;
    // A timer of our own, not AbortSignal.timeout(): Node's timer holds that signal weakly, and
    // inside AbortSignal.any() it can be garbage-collected before it fires, leaving the POST
    // waiting forever (seen on Node 20 under allocation pressure).
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new DOMException('timed out', 'TimeoutError')),
      timeoutMs,
    );
    try {
      res = await fetch(endpoint.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Threshold-Webhooks',
          'webhook-id': job.deliveryId,
          'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
          'webhook-signature': new Webhook(endpoint.secret).sign(job.deliveryId, timestamp, body),
        },
        body,
        // A redirected POST is a misconfigured URL, not a delivery: answered below as a 3xx.
        redirect: 'manual',
        signal: AbortSignal.any([timeout.signal, ctx.signal]),
      });
      // The status is all we need; release the connection.
      await res.body?.cancel().catch(() => undefined);
    } catch (err) {
      if (ctx.signal.aborted) return { status: 'retry', error: 'the node is stopping' };
      if ((err as Error).name === 'TimeoutError') {
        return {
          status: 'retry',
          code: 'timeout',
          error: `webhook ${name}: no answer within ${timeoutMs} ms`,
        };
      }
      return {
        status: 'retry',
        code: 'unreached',
        error: `webhook ${name}: cannot reach it: ${message(err)}`,
      };
    } finally {
      clearTimeout(timer);
    }

    const { status } = res;
    if (status >= 200 && status < 300) return { status: 'delivered' };
    if (status === 410) {
      const reason = `410 Gone from ${endpoint.url}`;
      ctx.log.warn(
        { webhook: name, url: endpoint.url },
        'webhook endpoint answered 410 Gone; disabled',
      );
      try {
        await endpoints.disable(name, reason);
      } catch (err) {
        ctx.log.error({ err, webhook: name }, 'could not disable webhook endpoint');
      }
      return {
        status: 'failed',
        code: '410',
        error: `webhook ${name}: ${reason}; endpoint disabled`,
      };
    }
    if (status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), now());
      return {
        status: 'retry',
        code: String(status),
        error: `HTTP ${status}`,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      };
    }
    return { status: 'failed', code: String(status), error: `HTTP ${status}` };
  }

  return { prefix: WEBHOOK_PREFIX, send };
}

/** The WebSocket `message` frame of DESIGN §5 (`messageFrameParts`' field order). */
export function messageFrame(room: string, m: ChannelMessage): string {
  return JSON.stringify({
    type: 'message',
    room,
    seq: m.seq,
    id: m.id,
    sender: m.sender,
    kind: m.kind,
    body: m.body,
    ...(m.media?.length ? { media: m.media } : {}),
    ts: m.ts,
  });
}

function message(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // undici's `fetch failed` says nothing; its cause (ECONNREFUSED, ENOTFOUND…) does.
  const cause = err.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? err.message;
}
