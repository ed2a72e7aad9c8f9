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
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
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
  const body: Problem = {
    // A URN, not a URL: there is no documentation page per error to link to (RFC 9457 §3.1.1).
    type: `urn:threshold:error:${problem.code}`,
    title: TITLES[problem.status] ?? 'Error',
    ...problem,
  };
  return c.body(JSON.stringify(body), problem.status as ContentfulStatusCode, {
    'content-type': 'application/problem+json',
    ...headers,
  });
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
