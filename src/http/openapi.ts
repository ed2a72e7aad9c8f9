import type { Hono } from 'hono';
import { z } from 'zod';
import { WEBHOOK_NAME } from '../delivery/webhook-endpoints.ts';
import { RecipientId, RoomId } from '../funnel/envelope.ts';
import { TAG_NAME } from '../notify/tag-expression.ts';
import type { AppEnv } from './app.ts';
import { DOCS_PAGE } from './docs-page.ts';
import { type Access, type Method, ROUTES, type RouteDoc } from './openapi-routes.ts';

const BEARERS = {
  adminToken: { type: 'http', scheme: 'bearer', description: "The node's admin token." },
  apiKey: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'thr_<id>_<secret>',
    description: 'An API key (`POST /v1/keys`); its scopes say which routes it opens.',
  },
  memberJwt: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: "A member's JWT (`sub` = the member id), e.g. from `POST /v1/auth/phone/verify`.",
  },
} as const;
type Scheme = keyof typeof BEARERS;

type Requirement = Partial<Record<Scheme, string[]>>;
// OpenAPI 3.1 lets any scheme name roles: an API key's are its scopes.
const ADMIN: Requirement[] = [{ adminToken: [] }, { apiKey: ['admin'] }];
const MEMBER: Requirement[] = [{ memberJwt: [] }];
const SECURITY: Record<Access, Requirement[]> = {
  public: [],
  twilio: [],
  admin: ADMIN,
  tags: [...ADMIN, { apiKey: ['tags'] }],
  notify: [...ADMIN, { apiKey: ['notify'] }],
  member: MEMBER,
  'member-or-admin': [...MEMBER, ...ADMIN],
  publish: [...MEMBER, ...ADMIN, { apiKey: ['publish:{room}'] }],
  client: [...MEMBER, ...ADMIN],
};

const PROBLEM = {
  type: 'object',
  description: 'RFC 9457 problem details',
  required: ['type', 'title', 'status', 'detail', 'code'],
  properties: {
    type: { type: 'string', description: '`urn:threshold:error:<code>`' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    code: { type: 'string' },
    field: { type: 'string', description: 'the offending field, for bad input' },
  },
};

/** A body schema as JSON Schema 2020-12, which OpenAPI 3.1 uses as is: what a client sends. */
function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
  return rest;
}

function operationId(method: Method, path: string): string {
  const words = path
    .split('/')
    .filter((s) => s && s !== 'v1')
    .map((s) => (s.startsWith('{') ? `by-${s.slice(1, -1)}` : s))
    .flatMap((s) => s.split(/[-._]/));
  return method + words.map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join('');
}

/** The path parameters' rules, as the routes check them (params.ts, tag-routes.ts, webhooks.ts). */
const PATH_PARAMS: Record<string, { description: string; schema: Record<string, unknown> }> = {
  room: { description: 'a room id', schema: jsonSchema(RoomId) },
  member: {
    description:
      "a member id (`user:alice`, `phone:+15551234567`) or a channel's (`webhook:billing`)",
    schema: jsonSchema(RecipientId),
  },
  tag: { description: 'a tag name', schema: { type: 'string', pattern: TAG_NAME.source } },
  name: {
    description: 'a webhook endpoint name',
    schema: { type: 'string', pattern: WEBHOOK_NAME.source },
  },
};

function pathParam(name: string) {
  const { description = 'an id', schema = { type: 'string' } } = PATH_PARAMS[name] ?? {};
  return { name, in: 'path', required: true, description, schema };
}

function operation(route: RouteDoc) {
  const body = route.body;
  const schemas = body === undefined ? [] : Array.isArray(body) ? body : [body as z.ZodType];
  // What every route of its kind may answer, unless the route says more.
  const common: Record<number, string> = {};
  if (schemas.length) common[400] = 'a bad field, named in `field`';
  if (SECURITY[route.auth].length) {
    common[401] = 'missing or invalid credentials';
    common[403] = 'these credentials may not';
  }
  const responses: Record<string, unknown> = {};
  for (const [status, description] of Object.entries({ ...common, ...route.responses })) {
    responses[status] =
      Number(status) >= 400
        ? {
            description,
            content: {
              'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
            },
          }
        : { description };
  }
  responses.default = { $ref: '#/components/responses/Problem' };
  const pathParams = [...route.path.matchAll(/\{([^}]+)\}/g)].map((m) => pathParam(m[1] ?? ''));
  return {
    operationId: operationId(route.method, route.path),
    tags: [route.tag],
    summary: route.summary,
    'x-threshold-access': route.auth,
    security: SECURITY[route.auth],
    ...(pathParams.length || route.params
      ? { parameters: [...pathParams, ...(route.params ?? [])] }
      : {}),
    ...(schemas.length
      ? {
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema:
                  schemas.length === 1
                    ? jsonSchema(schemas[0] as z.ZodType)
                    : { anyOf: schemas.map(jsonSchema) },
              },
            },
          },
        }
      : route.form
        ? {
            requestBody: {
              required: true,
              content: {
                'application/x-www-form-urlencoded': {
                  schema: { type: 'object', additionalProperties: { type: 'string' } },
                },
              },
            },
          }
        : {}),
    responses,
  };
}

/** The OpenAPI 3.1 document of ROUTES, its bodies generated from the schemas the routes check. */
export function openApiDocument(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of ROUTES) (paths[route.path] ??= {})[route.method] = operation(route);
  return {
    openapi: '3.1.0',
    info: {
      title: 'Threshold',
      version,
      description:
        'A relay mesh for group messaging. Errors are `application/problem+json` (RFC 9457). The WebSocket frames are in the README.',
    },
    tags: [...new Set(ROUTES.map((r) => r.tag))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: BEARERS,
      schemas: { Problem: PROBLEM },
      responses: {
        Problem: {
          description: 'an error',
          content: {
            'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
          },
        },
      },
    },
  };
}

/** `GET /openapi.json` and `GET /docs`: public, the same for every request, so cacheable. */
export function mountOpenApi(app: Hono<AppEnv>, version: string): void {
  let json: string | undefined;
  const cache = { 'cache-control': 'public, max-age=300' };
  app.get('/openapi.json', (c) => {
    json ??= JSON.stringify(openApiDocument(version));
    return c.body(json, 200, { ...cache, 'content-type': 'application/json' });
  });
  app.get('/docs', (c) =>
    c.body(DOCS_PAGE, 200, { ...cache, 'content-type': 'text/html; charset=utf-8' }),
  );
}
