import { onTestFailed } from 'vitest';
import type { ClusterState } from '../../src/mesh/cluster-view.ts';
import type { EmbeddedRedisOptions } from '../../src/redis/embedded.ts';
import { freePort } from './ports.ts';
import { ADMIN_TOKEN, JWT_SECRET } from './node.ts';
import { type NodeProcess, runThreshold } from './process.ts';
import { type PrivateRedis, onRedisCluster, registerCluster, startPrivateRedis } from './redis.ts';
import { startRedisCluster } from './redis-cluster.ts';

export const PARTITIONS = 64;

/** A relay node running as a real `threshold node` process. */
export interface MeshNode {
  id: string;
  url: string;
  wsUrl: string;
  process: NodeProcess;
  pid: number;
}

export interface Agreement {
  /** How long the nodes took to agree, from the call. */
  ms: number;
  /** `owners[n]`: the node every live node names as the owner of partition n. */
  owners: string[];
}

/**
 * Several relay node processes on one private Redis, on loopback. Every process is killed
 * when the test finishes (runThreshold), and the Redis is stopped.
 */
export class TestMesh {
  /** The nodes the test considers running, in start order. */
  readonly nodes: MeshNode[] = [];
  /** Every node ever started, running or not: where a client that is not told sends requests. */
  readonly started: MeshNode[] = [];
  private nextId = 1;

  constructor(readonly redis: PrivateRedis) {}

  /** Starts one more node and waits for its /readyz. */
  async add(env: NodeJS.ProcessEnv = {}): Promise<MeshNode> {
    const node = await this.spawn(env);
    await waitReady(node);
    this.nodes.push(node);
    this.started.push(node);
    return node;
  }

  /** Spawns a node process without waiting for it (for nodes expected to fail). */
  async spawn(env: NodeJS.ProcessEnv = {}): Promise<MeshNode> {
    const id = `node-${this.nextId++}`;
    const port = await freePort();
    const process = runThreshold(['node'], {
      THRESHOLD_REDIS_URL: this.redis.url,
      THRESHOLD_PORT: String(port),
      THRESHOLD_NODE_ID: id,
      THRESHOLD_PARTITIONS: String(PARTITIONS),
      THRESHOLD_ADMIN_TOKEN: ADMIN_TOKEN,
      THRESHOLD_JWT_SECRET: JWT_SECRET,
      THRESHOLD_LOG_LEVEL: 'info',
      ...env,
    });
    const url = `http://127.0.0.1:${port}`;
    return { id, url, wsUrl: `ws://127.0.0.1:${port}/v1/ws`, process, pid: process.child.pid ?? 0 };
  }

  /** Sends a signal and, for SIGKILL and SIGTERM, forgets the node (it is not running). */
  signal(node: MeshNode, signal: NodeJS.Signals): void {
    process.kill(node.pid, signal);
    if (signal === 'SIGKILL' || signal === 'SIGTERM') {
      this.nodes.splice(this.nodes.indexOf(node), 1);
    }
  }

  /** Freezes the node (SIGSTOP) for `ms`, then wakes it (SIGCONT): it stays in `nodes`. */
  async pause(node: MeshNode, ms: number): Promise<void> {
    process.kill(node.pid, 'SIGSTOP');
    try {
      await sleep(ms);
    } finally {
      process.kill(node.pid, 'SIGCONT');
    }
  }

  async cluster(node: MeshNode): Promise<ClusterState> {
    const res = await admin(node, 'GET', '/v1/cluster');
    if (res.status !== 200) throw new Error(`GET /v1/cluster on ${node.id}: ${res.status}`);
    return (await res.json()) as ClusterState;
  }

  /**
   * Waits until every running node lists exactly the running nodes, names the same owner
   * for every partition, holds the lease of exactly the partitions it owns, and owns some.
   */
  async agreement(timeoutMs = 10_000): Promise<Agreement> {
    const start = Date.now();
    let last = '';
    while (Date.now() - start < timeoutMs) {
      try {
        const views = await Promise.all(this.nodes.map((n) => this.cluster(n)));
        last = disagreement(
          this.nodes.map((n) => n.id),
          views,
        );
        if (!last) return { ms: Date.now() - start, owners: views[0]?.partitions as string[] };
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(`nodes did not agree within ${timeoutMs} ms: ${last}`);
  }

  /** Any running node, round robin: where clients send their requests. */
  pick(i: number): MeshNode {
    const node = this.nodes[i % this.nodes.length];
    if (!node) throw new Error('no running node');
    return node;
  }
}

/** Why these views are not one agreed picture, or '' when they are. */
function disagreement(expected: string[], views: ClusterState[]): string {
  const ids = [...expected].sort().join(',');
  const first = views[0];
  if (!first) return 'no node running';
  for (const view of views) {
    const listed = view.nodes
      .map((n) => n.id)
      .sort()
      .join(',');
    if (listed !== ids) return `${view.node} lists [${listed}], expected [${ids}]`;
    if (view.partitions.join(',') !== first.partitions.join(','))
      return `${view.node} and ${first.node} name different owners`;
    const owns = view.partitions.flatMap((o, n) => (o === view.node ? [n] : []));
    if (owns.length === 0) return `${view.node} owns no partition`;
    if (owns.join(',') !== view.held.join(','))
      return `${view.node} holds [${view.held.join(',')}] but owns [${owns.join(',')}]`;
  }
  return '';
}

/**
 * Starts a private Redis and `count` relay node processes on it; call inside a test. The
 * Redis keeps no append-only file unless `redis` asks for one (tests that restart it).
 * On the Redis Cluster tier it is a private three-master cluster instead (`redis` does not
 * apply): `mesh.redis` is its first master, the URL the nodes are given.
 */
export async function startMesh(
  count = 3,
  env: NodeJS.ProcessEnv = {},
  redis: Partial<EmbeddedRedisOptions> = { appendOnly: false },
): Promise<TestMesh> {
  const mesh = new TestMesh(await startMeshRedis(redis));
  // A failed test shows the end of every node's log: what a node said before it died or hung.
  onTestFailed(() => {
    for (const node of mesh.started) {
      const { exitCode, signalCode } = node.process.child;
      const tail = node.process.output().trimEnd().split('\n').slice(-15).join('\n');
      console.log(
        `--- ${node.id} (exit ${exitCode ?? signalCode ?? 'running'}), last log lines:\n${tail}`,
      );
    }
  });
  await Promise.all(Array.from({ length: count }, () => mesh.add(env)));
  mesh.nodes.sort((a, b) => a.id.localeCompare(b.id));
  return mesh;
}

async function startMeshRedis(options: Partial<EmbeddedRedisOptions>): Promise<PrivateRedis> {
  if (!onRedisCluster()) return startPrivateRedis(options);
  const cluster = await startRedisCluster(3);
  registerCluster(cluster.urls);
  return cluster.masters[0]!;
}

export function admin(node: MeshNode, method: string, path: string, body?: unknown) {
  return fetch(`${node.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Waits for the node's /readyz 200; throws if it exits or the time runs out. */
export async function waitReady(node: MeshNode, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const exit = node.process.child.exitCode;
    if (exit !== null) throw new Error(`${node.id} exited (${exit}):\n${node.process.output()}`);
    const ok = await fetch(`${node.url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${node.id} not ready within ${timeoutMs} ms:\n${node.process.output()}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
