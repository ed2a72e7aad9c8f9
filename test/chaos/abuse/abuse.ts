import { type Agent, type IncomingHttpHeaders, type OutgoingHttpHeaders, request } from 'node:http';
import { metric } from '../../twilio/sms-node.ts';

/**
 * A seeded PRNG (mulberry32): the same seed gives the same cases, so a failure is
 * reproduced by running again with `ABUSE_SEED=<seed>`.
 */
export class Rng {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** A string of `n` characters from `alphabet`. */
  string(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'): string {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** The seed of this run: `ABUSE_SEED`, else a fresh one (printed with the figures). */
export function seed(): number {
  const given = process.env.ABUSE_SEED;
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}

/** The node's resident memory (`process_resident_memory_bytes`), in MiB. */
export async function rssMiB(url: string): Promise<number> {
  return (await memoryMiB(url)).rss;
}

/** The node's resident memory and the V8 heap in use (garbage not yet collected included), in MiB. */
export async function memoryMiB(url: string): Promise<{ rss: number; heap: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const mib = (name: string) => Math.round(metric(text, name) / 1048576);
  return { rss: mib('process_resident_memory_bytes'), heap: mib('nodejs_heap_size_used_bytes') };
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface RawRequest {
  method: string;
  /** Path and query, sent as is (Node refuses only control characters and spaces). */
  path: string;
  /** Arrays send the header several times (duplicate Content-Length). */
  headers: OutgoingHttpHeaders;
  /** Sent with Content-Length unless the headers say otherwise. */
  body?: Buffer;
  /** Sent chunked, without Content-Length: `chunks` pieces of `chunk` bytes each. */
  chunked?: { chunk: Buffer; chunks: number };
}

/**
 * One request over `http.request`, which lets a test send what fetch refuses: duplicate
 * headers, bytes over 0x7f (latin1) in header values, a body without length. Resolves with the
 * answer (101 for an accepted upgrade), even when the server answered before the body was
 * sent and closed the connection; rejects on a connection error without any answer, or
 * after `timeoutMs` (a hang). The error says whether the request went out on a kept-alive
 * socket (`reusedSocket`): see {@link closedWhileIdle}.
 */
/**
 * A kept-alive socket the server closed as idle (Node's `keepAliveTimeout`) just as the
 * client sent a request on it: the request never reached the server, which did nothing
 * wrong. Node's documentation for `request.reusedSocket` describes this race and retrying.
 */
export function closedWhileIdle(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException & { reusedSocket?: boolean };
  return e.reusedSocket === true && e.code === 'ECONNRESET';
}

export function rawRequest(
  base: string,
  agent: Agent,
  req: RawRequest,
  timeoutMs = 10_000,
): Promise<RawResponse> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    let answered = false;
    const r = request({
      host: url.hostname,
      port: url.port,
      method: req.method,
      path: req.path,
      headers: req.headers,
      agent,
    });
    const timer = setTimeout(() => {
      r.destroy(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (res: RawResponse) => {
      answered = true;
      clearTimeout(timer);
      resolve(res);
    };
    r.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () =>
        finish({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }),
      );
      res.on('error', () =>
        finish({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }),
      );
    });
    r.on('upgrade', (res, socket) => {
      socket.destroy();
      finish({ status: 101, headers: res.headers, body: Buffer.alloc(0) });
    });
    r.on('error', (err) => {
      if (answered) return;
      clearTimeout(timer);
      reject(Object.assign(err, { reusedSocket: r.reusedSocket }));
    });
    if (req.chunked) {
      const { chunk, chunks } = req.chunked;
      let sent = 0;
      const write = () => {
        while (sent < chunks && !r.destroyed) {
          sent++;
          if (!r.write(chunk)) {
            r.once('drain', write);
            return;
          }
        }
        if (!r.destroyed) r.end();
      };
      write();
    } else {
      r.end(req.body);
    }
  });
}

/**
 * True when an error answer is RFC 9457 problem+json whose `status` is the HTTP status (an
 * answer to HEAD has the content type but, by definition, no body).
 */
export function isProblem(res: RawResponse, method = 'GET'): boolean {
  if (!String(res.headers['content-type'] ?? '').startsWith('application/problem+json'))
    return false;
  if (method === 'HEAD') return true;
  try {
    const body = JSON.parse(res.body.toString('utf8')) as { status?: unknown; code?: unknown };
    return body.status === res.status && typeof body.code === 'string';
  } catch {
    return false;
  }
}
