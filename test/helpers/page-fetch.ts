/**
 * `fetch` as a page on another origin makes it in a browser, for machines without one: the
 * Fetch standard's CORS steps (https://fetch.spec.whatwg.org/#http-cors-protocol) with the
 * page's default credentials mode (no cookies). A request that is not "simple" (a bearer token,
 * a JSON body, PUT…) is preflighted; a failed check rejects with a TypeError, as a browser's
 * fetch does, and the page then sees neither the status nor the body.
 */

const SIMPLE_METHODS = ['GET', 'HEAD', 'POST'];
const SIMPLE_CONTENT_TYPES = [
  'application/x-www-form-urlencoded',
  'multipart/form-data',
  'text/plain',
];
/** Response headers a page may always read; others only when exposed. */
const SAFELISTED_RESPONSE = [
  'cache-control',
  'content-language',
  'content-length',
  'content-type',
  'expires',
  'last-modified',
  'pragma',
];

export interface PageRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface PageResponse {
  status: number;
  /** Only the headers the page can read (safelisted and exposed), lowercase. */
  headers: Map<string, string>;
  text: string;
  /** What went over the wire, preflight first: what the browser's network panel shows. */
  wire: { method: string; status: number }[];
}

export async function pageFetch(
  origin: string,
  url: string,
  { method = 'GET', headers = {}, body }: PageRequest = {},
): Promise<PageResponse> {
  const wire: PageResponse['wire'] = [];
  const names = Object.keys(headers).map((h) => h.toLowerCase());
  const unsafe = names.filter(
    (h) =>
      !['accept', 'accept-language', 'content-language', 'content-type'].includes(h) ||
      (h === 'content-type' && !SIMPLE_CONTENT_TYPES.includes(contentType(headers))),
  );
  if (!SIMPLE_METHODS.includes(method) || unsafe.length > 0) {
    const preflight = await fetch(url, {
      method: 'OPTIONS',
      headers: {
        origin,
        'access-control-request-method': method,
        ...(unsafe.length > 0 ? { 'access-control-request-headers': unsafe.sort().join(',') } : {}),
      },
    });
    wire.push({ method: 'OPTIONS', status: preflight.status });
    await preflight.arrayBuffer();
    if (preflight.status < 200 || preflight.status > 299)
      throw new BlockedByCors(`preflight answered ${preflight.status}`, wire);
    corsCheck(preflight, origin, wire);
    const methods = tokens(preflight.headers.get('access-control-allow-methods'));
    if (!SIMPLE_METHODS.includes(method) && !methods.includes(method) && !methods.includes('*'))
      throw new BlockedByCors(`method ${method} not allowed by the preflight`, wire);
    const allowed = tokens(preflight.headers.get('access-control-allow-headers')).map((h) =>
      h.toLowerCase(),
    );
    // `*` never covers Authorization.
    const missing = unsafe.filter(
      (h) => !allowed.includes(h) && (h === 'authorization' || !allowed.includes('*')),
    );
    if (missing.length > 0)
      throw new BlockedByCors(`headers ${missing.join(', ')} not allowed by the preflight`, wire);
  }
  const res = await fetch(url, { method, headers: { ...headers, origin }, body });
  wire.push({ method, status: res.status });
  const text = await res.text();
  corsCheck(res, origin, wire);
  const exposed = [
    ...SAFELISTED_RESPONSE,
    ...tokens(res.headers.get('access-control-expose-headers')).map((h) => h.toLowerCase()),
  ];
  const readable = new Map<string, string>();
  res.headers.forEach((value, name) => {
    if (exposed.includes(name)) readable.set(name, value);
  });
  return { status: res.status, headers: readable, text, wire };
}

/** A page cannot tell why: the browser's console says, the script gets a bare TypeError. */
export class BlockedByCors extends TypeError {
  constructor(
    readonly reason: string,
    readonly wire: PageResponse['wire'],
  ) {
    super('Failed to fetch');
    this.name = 'TypeError';
  }
}

function corsCheck(res: Response, origin: string, wire: PageResponse['wire']): void {
  const allow = res.headers.get('access-control-allow-origin');
  if (allow !== '*' && allow !== origin)
    throw new BlockedByCors(`Access-Control-Allow-Origin is ${allow ?? 'absent'}`, wire);
}

function contentType(headers: Record<string, string>): string {
  const value = Object.entries(headers).find(([h]) => h.toLowerCase() === 'content-type')?.[1];
  return (value ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function tokens(value: string | null): string[] {
  return (value ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
}
