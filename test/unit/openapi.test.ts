import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type AppDeps, createApp } from '../../src/http/app.ts';
import { mountIdentity } from '../../src/http/identity-routes.ts';
import { mountMemberSettings } from '../../src/http/member-routes.ts';
import { mountNotifications } from '../../src/http/notification-routes.ts';
import { openApiDocument } from '../../src/http/openapi.ts';
import { ROUTES } from '../../src/http/openapi-routes.ts';
import { mountPresence } from '../../src/http/presence-routes.ts';
import { mountPush } from '../../src/http/push-routes.ts';
import { NewRoomBody, PublishBody } from '../../src/http/room-bodies.ts';
import { mountTags } from '../../src/http/tag-routes.ts';
import { mountTwilio } from '../../src/http/twilio.ts';
import { mountWebhooks } from '../../src/http/webhooks.ts';
import { mountWebSocket } from '../../src/http/websocket.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';

/** Deps no request below reaches: only the routes are wanted, not their behaviour. */
const unused = {} as never;

/** The app as node.ts wires it, with every optional route on (conversations, dev SMS). */
function fullApp() {
  const deps: AppDeps = {
    auth: unused,
    cluster: unused,
    rooms: unused,
    ingress: unused,
    history: unused,
    metrics: new Metrics(),
    conversations: unused,
    operator: unused,
    health: { ready: () => true, draining: () => false },
    log: createLogger('silent'),
    version: '1.2.3',
    options: { maxBodyBytes: 65_536, maxBodyChars: 4096 },
  };
  const app = createApp(deps);
  mountTwilio(app, { dev: {} } as never, {
    authToken: '',
    publicUrl: () => '',
    maxBodyBytes: 65_536,
  });
  mountWebhooks(app, unused);
  mountIdentity(app, unused);
  mountPush(app, unused);
  mountTags(app, { tags: unused, options: { maxUpload: 100 } } as never);
  mountMemberSettings(app, unused);
  mountNotifications(app, unused);
  mountPresence(app, unused);
  const ws = mountWebSocket(app, unused, {
    maxFrameBytes: 65_536,
    allowedOrigins: [],
    heartbeatMs: 60_000,
  } as never);
  ws.closeAll();
  return app;
}

/** The mount functions this file calls, so a route family node.ts gains cannot go unchecked. */
const MOUNTED = [
  'mountTwilio',
  'mountWebhooks',
  'mountIdentity',
  'mountPush',
  'mountTags',
  'mountMemberSettings',
  'mountNotifications',
  'mountPresence',
  'mountWebSocket',
];

type Json = Record<string, unknown>;
const doc = openApiDocument('1.2.3') as {
  openapi: string;
  info: Json;
  tags: { name: string }[];
  paths: Record<string, Record<string, Json>>;
  components: { securitySchemes: Json };
};
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** Every `$ref` anywhere in the document. */
function refs(value: unknown, found: string[] = []): string[] {
  if (Array.isArray(value)) value.forEach((v) => refs(v, found));
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') found.push(v);
      else refs(v, found);
    }
  }
  return found;
}

function resolve(pointer: string): unknown {
  return pointer
    .slice(2)
    .split('/')
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce<unknown>((node, key) => (node as Json | undefined)?.[key], doc);
}

describe('/openapi.json', () => {
  // No OpenAPI 3.1 validator is installed (ajv here is v6, draft-07 only, and no package ships
  // the 3.1 schema), so these are the structural rules of the spec a validator would check.
  it('is a well-formed OpenAPI 3.1 document', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'Threshold', version: '1.2.3' });
    const tags = new Set(doc.tags.map((t) => t.name));
    const schemes = Object.keys(doc.components.securitySchemes);
    const ids = new Set<string>();
    for (const [path, item] of Object.entries(doc.paths)) {
      expect(path).toMatch(/^\//);
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(item)) {
        const where = `${method} ${path}`;
        expect(METHODS, where).toContain(method);
        expect(typeof op.operationId, where).toBe('string');
        expect(ids.has(op.operationId as string), `${where}: operationId unique`).toBe(false);
        ids.add(op.operationId as string);
        const responses = Object.entries(op.responses as Record<string, Json>);
        expect(responses.length, where).toBeGreaterThan(0);
        for (const [status, response] of responses) {
          expect(status, where).toMatch(/^([1-5]\d\d|[1-5]XX|default)$/);
          expect(response.$ref ?? response.description, `${where} ${status}`).toBeTypeOf('string');
        }
        const params = (op.parameters ?? []) as { name: string; in: string; required?: boolean }[];
        const inPath = params.filter((p) => p.in === 'path');
        expect(inPath.map((p) => p.name).sort(), `${where}: path parameters`).toEqual(
          [...templated].sort(),
        );
        for (const p of inPath) expect(p.required, `${where} ${p.name}`).toBe(true);
        for (const p of params) expect(['query', 'header', 'path', 'cookie']).toContain(p.in);
        const pairs = params.map((p) => `${p.in}:${p.name}`);
        expect(new Set(pairs).size, `${where}: parameters unique`).toBe(pairs.length);
        for (const tag of op.tags as string[]) expect(tags, where).toContain(tag);
        for (const requirement of op.security as Json[])
          for (const scheme of Object.keys(requirement)) expect(schemes, where).toContain(scheme);
        const body = op.requestBody as { content: Record<string, { schema: Json }> } | undefined;
        for (const media of Object.values(body?.content ?? {}))
          expect(media.schema, where).toBeTypeOf('object');
      }
    }
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(0);
    for (const ref of all) {
      expect(ref, 'local refs only').toMatch(/^#\//);
      expect(resolve(ref), ref).toBeDefined();
    }
    for (const scheme of Object.values(doc.components.securitySchemes))
      expect(scheme).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('documents every route the app serves, and no route it does not serve', () => {
    const served = new Set(
      fullApp()
        .routes.filter((r) => r.method !== 'ALL' && !r.path.endsWith('*'))
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`),
    );
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, item]) =>
        Object.keys(item).map((method) => `${method} ${path}`),
      ),
    );
    expect(
      [...served].filter((r) => !documented.has(r)),
      'served, not documented',
    ).toEqual([]);
    expect(
      [...documented].filter((r) => !served.has(r)),
      'documented, not served',
    ).toEqual([]);
  });

  it('checks the same mounts node.ts makes', () => {
    const source = readFileSync(new URL('../../src/node.ts', import.meta.url), 'utf8');
    const called = [...new Set([...source.matchAll(/\b(mount\w+)\(/g)].map((m) => m[1]))];
    expect(called.sort()).toEqual([...MOUNTED].sort());
  });

  it('documents the very schemas that validate the bodies', () => {
    const route = (method: string, path: string) =>
      ROUTES.find((r) => r.method === method && r.path === path);
    expect(route('post', '/v1/rooms/{room}/messages')?.body).toBe(PublishBody);
    const rooms = route('post', '/v1/rooms')?.body;
    expect(Array.isArray(rooms) && rooms[0]).toBe(NewRoomBody);
    expect(NewRoomBody.safeParse({ id: 'ops', settings: { open: true } }).success).toBe(true);
    expect(NewRoomBody.safeParse({ id: 'Not A Room' }).success).toBe(false);
    expect(NewRoomBody.safeParse({ id: 'ops', colour: 'red' }).success).toBe(false);
    const schema = doc.paths['/v1/rooms/{room}/messages']?.post as {
      requestBody: { content: { 'application/json': { schema: Json } } };
    };
    expect(schema.requestBody.content['application/json'].schema).toMatchObject({
      type: 'object',
      required: ['body'],
      additionalProperties: false,
    });
  });

  it('is served, cacheable, with the reference page beside it', async () => {
    const app = fullApp();
    const res = await app.request('/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(res.headers.get('cache-control')).toMatch(/public/);
    expect(await res.json()).toEqual(doc);
    const page = await app.request('/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain("fetch('openapi.json')");
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="?http/);
    // No DOM here to render it in; the page's script at least parses.
    const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? '';
    expect(() => new Function(script)).not.toThrow();
  });
});
