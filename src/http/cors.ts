import type { MiddlewareHandler } from 'hono';
import { list } from '../config.ts';
import { cors as honoCors } from 'hono/cors';
import { ForbiddenError } from '../errors.ts';

/** How long a browser may reuse a preflight's answer (Chrome caps it at 7200 s anyway). */
const PREFLIGHT_MAX_AGE_SECONDS = 600;

/**
 * CORS for browser pages on other origins (`http.allowedOrigins`). An allowed origin gets
 * `Access-Control-Allow-Origin` on every answer, errors included, and its preflight a 204; a
 * refused origin gets no CORS headers, and its preflight a 403 naming the setting. Requests
 * without an `Origin` (not from a browser page) are left alone. Credentials are never allowed:
 * clients authenticate with a bearer token, not cookies, so a page needs a token it was given.
 *
 * `origins` empty or holding `*`: any origin (answered `*`).
 */
/**
 * The origins CORS lets in: `http.allowedOrigins`, else `ws.allowedOrigins`; with neither set,
 * any origin (bearer tokens, never cookies) — except in open development mode, where every
 * request is trusted: there a page on any site could drive the node, so no origin is let in
 * until one is named.
 */
export function corsOrigins(
  config: { http: { allowedOrigins: string }; ws: { allowedOrigins: string } },
  devMode: boolean,
): string[] | undefined {
  const named = config.http.allowedOrigins || config.ws.allowedOrigins;
  if (!named && devMode) return undefined;
  return list(named);
}

export function cors(origins: readonly string[]): MiddlewareHandler {
  const any = origins.length === 0 || origins.includes('*');
  const allowed = new Set(origins.map(normalizeOrigin));
  const answer = honoCors({
    // Only reached for an allowed origin (below), which is then echoed.
    origin: any ? '*' : (origin) => origin,
    allowMethods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    allowHeaders: ['authorization', 'content-type', 'idempotency-key'],
    // Headers a page may read besides the safelisted ones: how long to wait after a 429 or 503.
    exposeHeaders: ['retry-after'],
    maxAge: PREFLIGHT_MAX_AGE_SECONDS,
    credentials: false,
  });
  return async (c, next) => {
    const origin = c.req.header('origin');
    if (origin !== undefined && (any || allowed.has(origin))) return answer(c, next);
    const preflight =
      c.req.method === 'OPTIONS' && c.req.header('access-control-request-method') !== undefined;
    if (origin !== undefined && preflight) {
      throw new ForbiddenError(
        `Origin ${origin.slice(0, 200)} may not call this API from a browser (http.allowedOrigins)`,
      );
    }
    await next();
    // The answer depends on the Origin, so a cache must not hand it to another origin.
    if (!any) c.header('Vary', 'Origin', { append: true });
  };
}

/**
 * Browsers send an origin's scheme and host in lowercase, with no path: a configured origin is
 * compared the same way (`HTTPS://App.example.com/` allows `https://app.example.com`).
 */
export function normalizeOrigin(origin: string): string {
  return origin.toLowerCase().replace(/\/$/, '');
}
