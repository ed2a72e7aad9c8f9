import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { ThresholdError, ValidationError, isRedisUnavailable } from '../errors.ts';

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  field?: string;
}

/** Every non-2xx answer: RFC 9457 problem details. */
export function problemResponse(
  c: Context,
  problem: Omit<Problem, 'type' | 'title'>,
  headers?: Record<string, string>,
): Response {
  return c.body(problemJson(problem), problem.status as ContentfulStatusCode, {
    'content-type': 'application/problem+json',
    ...headers,
  });
}

function problemJson(problem: Omit<Problem, 'type' | 'title'>): string {
  const body: Problem = {
    // A URN, not a URL: there is no documentation page per error to link to (RFC 9457 §3.1.1).
    type: `urn:threshold:error:${problem.code}`,
    title: TITLES[problem.status] ?? 'Error',
    ...problem,
  };
  return JSON.stringify(body);
}

/**
 * The HTTP server's `clientError`: a request Node's parser refused before the app saw it
 * (malformed request line or headers, duplicate Content-Length, headers over Node's 16 KiB)
 * gets a problem+json answer like any other error, then the connection is closed.
 */
export function answerClientError(
  err: Error & { code?: string; rawPacket?: Buffer },
  socket: Duplex,
): void {
  // Node's own handler answers only while no response has started on the connection.
  const started = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage
    ?.headersSent;
  if (err.code === 'ECONNRESET' || !socket.writable || started) {
    socket.destroy();
    return;
  }
  const status =
    err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const body = problemJson({
    status,
    code: 'bad_http_request',
    detail:
      status === 431
        ? 'request headers are too large'
        : status === 408
          ? 'the request took too long to arrive'
          : `malformed HTTP request (${err.code ?? 'parse error'})`,
  });
  // An answer to HEAD has no body (the request line is at the start of the packet Node was
  // parsing, as far as it got).
  const head = err.rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/problem+json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${head ? '' : body}`,
  );
}

/** Maps any thrown error to a problem; unexpected ones are 500 and left for the caller to log. */
export function toProblem(err: unknown): Omit<Problem, 'type' | 'title'> {
  if (err instanceof ValidationError) {
    return {
      status: 400,
      code: err.code,
      detail: err.message,
      ...(err.field ? { field: err.field } : {}),
    };
  }
  if (isRedisUnavailable(err)) {
    return {
      status: 503,
      code: 'unavailable',
      detail: 'Redis is unavailable right now; retry shortly',
    };
  }
  if (err instanceof ThresholdError)
    return { status: err.status, code: err.code, detail: err.message };
  if (err instanceof HTTPException) {
    return {
      status: err.status,
      code: `http_${err.status}`,
      detail: err.message || TITLES[err.status] || 'error',
    };
  }
  return {
    status: 500,
    code: 'internal',
    detail: 'the request failed on the server; see the node log',
  };
}
