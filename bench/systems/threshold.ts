/** Threshold as users run it: `threshold node` processes on one Redis, set up over its API. */
import { fileURLToPath } from 'node:url';
import { sign } from 'hono/jwt';
import { freePort } from '../../src/redis/embedded.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { pool } from '../../test/helpers/pool.ts';
import { type Spawned, spawnPinned } from '../lib/processes.ts';
import { type BenchRedis, type RedisMode, startBenchRedis } from './redis.ts';

export const ADMIN_TOKEN = 'bench-admin-token';
export const JWT_SECRET = 'bench-jwt-secret';
export const PARTITIONS = 64;
const BIN = fileURLToPath(new URL('../../bin/threshold.js', import.meta.url));

export interface ThresholdNode {
  id: string;
  url: string;
  /** The WebSocket URL with the admin token (reads any room, publishes as a service). */
  wsUrl: string;
  process: Spawned;
}

export class ThresholdCluster {
  private constructor(
    readonly redis: BenchRedis,
    readonly nodes: ThresholdNode[],
  ) {}

  /**
   * Starts a Redis (one server, or a three-master Redis Cluster whose seed list the nodes get
   * as their URL) and `count` nodes (plus `env`), and waits until they split the partitions.
   */
  static async start(
    count: number,
    env: NodeJS.ProcessEnv = {},
    mode: RedisMode = 'standalone',
  ): Promise<ThresholdCluster> {
    const redis = await startBenchRedis(mode);
    const nodes: ThresholdNode[] = [];
    for (let i = 1; i <= count; i++) {
      const port = await freePort();
      const id = `node-${i}`;
      // `npm run bench -- --profile <dir>`: a V8 CPU profile of each node, written as it stops.
      const dir = global.process.env.THRESHOLD_BENCH_PROFILE_DIR;
      const profile = dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
      const process = spawnPinned(
        id,
        global.process.execPath,
        [...profile, BIN, 'node'],
        'server',
        {
          THRESHOLD_REDIS_URL: redis.url,
          THRESHOLD_PORT: String(port),
          THRESHOLD_NODE_ID: id,
          THRESHOLD_PARTITIONS: String(PARTITIONS),
          THRESHOLD_ADMIN_TOKEN: ADMIN_TOKEN,
          THRESHOLD_JWT_SECRET: JWT_SECRET,
          THRESHOLD_LOG_LEVEL: 'warn',
          // The per-client limits guard a node against one abusive client; the bench's few
          // clients carry everyone's load (one publisher at thousands of frames a second, 10,000
          // connections as one member), so they are lifted, as Socket.IO has none.
          THRESHOLD_WS_FRAMES_PER_SECOND: '0',
          THRESHOLD_WS_MAX_CONNECTIONS_PER_MEMBER: '0',
          THRESHOLD_RATE_LIMIT_PUBLISH_PER_SECOND: '0',
          // Stops are not measured: a short grace (250 ms) for connections left open, such as
          // the bench's own idle keep-alive admin connections, instead of 2 s per node.
          THRESHOLD_SHUTDOWN_TIMEOUT_MS: '1000',
          ...env,
        },
      );
      const url = `http://127.0.0.1:${port}`;
      nodes.push({ id, url, wsUrl: `ws://127.0.0.1:${port}/v1/ws?token=${ADMIN_TOKEN}`, process });
    }
    const cluster = new ThresholdCluster(redis, nodes);
    await cluster.settled();
    return cluster;
  }

  get processes() {
    return [
      ...this.nodes.map((n) => ({ name: `threshold ${n.id}`, pid: n.process.pid })),
      ...this.redis.servers,
    ];
  }

  /** Every node ready, and each names the same owners with every node owning some. */
  private async settled(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const n of this.nodes) {
        if (n.process.child.exitCode !== null)
          throw new Error(`${n.id} exited:\n${n.process.output()}`);
      }
      try {
        const views = await Promise.all(
          this.nodes.map(async (n) => {
            const res = await this.admin(n, 'GET', '/v1/cluster');
            return (await res.json()) as { partitions: string[]; held: number[] };
          }),
        );
        const owners = views[0]?.partitions.join(',');
        const held = views.reduce((sum, v) => sum + v.held.length, 0);
        if (views.every((v) => v.partitions.join(',') === owners) && held === PARTITIONS) return;
      } catch {
        // Not listening yet.
      }
      await sleep(100);
    }
    throw new Error(`Threshold nodes did not settle:\n${this.nodes[0]?.process.output()}`);
  }

  admin(node: ThresholdNode, method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`${node.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  /**
   * Runs admin requests `concurrency` at a time, round robin over the nodes (fetch keeps the
   * connections alive: 10,000 rooms are set up in seconds).
   */
  async adminAll(
    requests: { method: string; path: string; body?: unknown }[],
    concurrency = 128,
  ): Promise<void> {
    await pool(requests.length, concurrency, async (i) => {
      const r = requests[i] as (typeof requests)[number];
      const node = this.nodes[i % this.nodes.length] as ThresholdNode;
      const res = await this.admin(node, r.method, r.path, r.body);
      if (!res.ok) throw new Error(`${r.method} ${r.path}: ${res.status} ${await res.text()}`);
    });
  }

  createRooms(rooms: string[], numbers?: (i: number) => string[]): Promise<void> {
    return this.adminAll(
      rooms.map((id, i) => ({
        method: 'POST',
        path: '/v1/rooms',
        body: numbers ? { id, numbers: numbers(i) } : { id },
      })),
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.process.stop()));
    await this.redis.stop();
  }
}

/** An HS256 client token for `member`, as the operator's backend would issue it. */
export function clientToken(member: string): Promise<string> {
  return sign({ sub: member, exp: Math.floor(Date.now() / 1000) + 3600 }, JWT_SECRET, 'HS256');
}
