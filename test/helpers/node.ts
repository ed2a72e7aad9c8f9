import { sign } from 'hono/jwt';
import { afterAll, beforeAll, onTestFinished } from 'vitest';
import { type Config, loadConfig } from '../../src/config.ts';
import { type RelayNode, startNode } from '../../src/node.ts';
import { connect, deleteKeys, redisUrl, uniquePrefix } from './redis.ts';

export const ADMIN_TOKEN = 'admin-token';
export const JWT_SECRET = 'jwt-secret';

export interface TestNode {
  node: RelayNode;
  config: Config;
  /** The node's own key prefix (see uniquePrefix). */
  prefix: string;
  /** `http://127.0.0.1:<port>`, where it listens (its publicUrl may be another). */
  url: string;
  /** `ws://127.0.0.1:<port>/v1/ws` (add `?token=`) */
  wsUrl: string;
  /** A request with the admin bearer token; an object body is sent as JSON, a string as is. */
  admin(method: string, path: string, body?: unknown): Promise<Response>;
  /** An HS256 client JWT whose `sub` is the member id. */
  token(member: string): Promise<string>;
  /** Creates a room (admin API) and adds the members; throws unless every call succeeds. */
  createRoom(id: string, members?: string[]): Promise<void>;
  /** Stops the node and deletes its keys; safe to call twice. */
  stop(): Promise<void>;
}

export interface TestNodeOptions {
  /** Names the key prefix, for reading Redis by eye. */
  name?: string;
  /** Config settings over the test defaults, e.g. `{ ws: { maxBufferedBytes: 4096 } }`. */
  overrides?: Record<string, unknown>;
  /** A config file (`THRESHOLD_CONFIG`), under the test defaults and overrides. */
  config?: string;
}

/**
 * Starts an in-process relay node on the shared Redis, on a free loopback port and a key
 * prefix of its own, and resolves once `GET /readyz` answers 200. Inside a test it is
 * stopped when the test finishes; elsewhere use {@link useTestNode}.
 */
export async function startTestNode(options: TestNodeOptions = {}): Promise<TestNode> {
  let started: TestNode | undefined;
  try {
    onTestFinished(async () => {
      await started?.stop();
    });
  } catch (err) {
    // A hook registered from a beforeAll would be silently ignored, leaking the node.
    throw new Error(
      'startTestNode() must be called inside a test; use useTestNode() at the top of a ' +
        'describe for a node shared by the suite',
      { cause: err },
    );
  }
  started = await createTestNode(options);
  return started;
}

/**
 * A node for the enclosing file or `describe`, started in beforeAll and stopped in afterAll.
 * The returned function gives the node inside tests.
 */
export function useTestNode(options: TestNodeOptions = {}): () => TestNode {
  let node: TestNode | undefined;
  beforeAll(async () => {
    node = await createTestNode(options);
  });
  afterAll(async () => {
    await node?.stop();
  });
  return () => {
    if (!node) throw new Error('useTestNode(): the node starts in beforeAll');
    return node;
  };
}

async function createTestNode({ name = 'node', overrides = {}, config: file }: TestNodeOptions) {
  const prefix = uniquePrefix(name);
  const config = loadConfig({
    env: file ? { THRESHOLD_CONFIG: file } : {},
    overrides: {
      redisUrl: redisUrl(),
      port: 0,
      host: '127.0.0.1',
      keyPrefix: prefix,
      adminToken: ADMIN_TOKEN,
      jwtSecret: JWT_SECRET,
      logLevel: 'silent',
      partitions: 8,
      ...overrides,
    },
  });
  const node = await startNode(config);
  const url = node.listenUrl;
  const wsUrl = `${url.replace(/^http/, 'ws')}/v1/ws`;

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      await node.stop();
      const client = connect();
      try {
        await deleteKeys(client, prefix);
      } finally {
        await client.quit().catch(() => client.disconnect());
      }
    })());

  const admin = (method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_TOKEN}` };
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    return fetch(`${url}${path}`, { method, headers, body: payload });
  };

  const testNode: TestNode = {
    node,
    config,
    prefix,
    url,
    wsUrl,
    admin,
    token: (member) => sign({ sub: member }, JWT_SECRET, 'HS256'),
    async createRoom(id, members = []) {
      const res = await admin('POST', '/v1/rooms', { id });
      if (res.status !== 201)
        throw new Error(`create room ${id}: ${res.status} ${await res.text()}`);
      for (const m of members) {
        const added = await admin('PUT', `/v1/rooms/${id}/members/${m}`);
        if (added.status !== 201)
          throw new Error(`add ${m} to ${id}: ${added.status} ${await added.text()}`);
      }
    },
    stop,
  };

  try {
    await waitUntilReady(url, 10_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return testNode;
}

async function waitUntilReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.status === 200) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`node at ${url} not ready within ${timeoutMs} ms: ${last}`);
}

/** Requests to `node` with `token` as the bearer credential (an API key, a member JWT). */
export function as(node: Pick<TestNode, 'url'>, token: string) {
  return (method: string, path: string, body?: unknown) =>
    fetch(`${node.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
}
