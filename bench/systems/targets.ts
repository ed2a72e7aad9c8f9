/**
 * Each system the room workloads run against, behind one interface: what serves (and is
 * measured), how the publisher reaches it, who receives and reports latency.
 */
import type { ConnectParams } from '../clients/publisher.ts';
import type { ClientSystem, SubscribeParams } from '../clients/subscribers.ts';
import { type BenchChild, forkBench } from '../lib/processes.ts';
import type { Receipts, ReceiverWindow } from '../lib/receiver.ts';
import type { RawNodeParams } from './raw-node.ts';
import { type RedisMode, startBenchRedis } from './redis.ts';
import type { SocketIoAdapter } from './socketio-server.ts';
import { PARTITIONS, ThresholdCluster } from './threshold.ts';

export type SystemName = 'threshold' | 'raw' | 'socketio-streams' | 'socketio-redis';

export const SYSTEM_LABELS: Record<SystemName, string> = {
  threshold: 'Threshold',
  raw: 'Raw pipeline (ioredis)',
  'socketio-streams': 'Socket.IO + redis-streams-adapter',
  'socketio-redis': 'Socket.IO + redis-adapter (pub/sub)',
};

export interface Target {
  /** Server-side processes (nodes, servers, consumers, redis) for CPU and RSS figures. */
  processes: { name: string; pid: number }[];
  /** Load-generator processes that receive (Threshold, Socket.IO subscribers). */
  clients: { name: string; pid: number }[];
  publisher: ConnectParams;
  /** Subscribes `perRoom` receivers to every room, spread over the servers. */
  subscribe(rooms: string[], perRoom: number): Promise<void>;
  window(w: ReceiverWindow): Promise<void>;
  report(): Promise<Receipts[]>;
  /**
   * Messages committed so far (systems that commit), asked of the publisher for Threshold
   * (it acks each publish after its commit; a /metrics scrape would stall the nodes inside
   * the measured window) and of the raw pipeline's consumers themselves (a counter read over
   * IPC between batches, which costs them next to nothing).
   */
  committed?(publisher: BenchChild): Promise<number>;
  stop(): Promise<void>;
}

const NODES = 2;
/** Rooms created per admin batch while setting up (see startThreshold). */
const SETUP_CHUNK = 1000;

/** Subscribers in a load-generator process of their own (Threshold, Socket.IO). */
function subscriberClient(system: ClientSystem) {
  const client = forkBench(`${system} subscribers`, 'clients/subscribers.ts', 'client');
  return {
    client,
    subscribe: async (urls: string[], rooms: string[], perRoom: number) => {
      await client.call('subscribe', { system, urls, rooms, perRoom } satisfies SubscribeParams);
    },
    window: (w: ReceiverWindow) => client.call<void>('window', w),
    report: async () => [await client.call<Receipts>('report')],
  };
}

/** `redis`: what Threshold runs on (the peers always run on one redis-server). */
export async function startTarget(
  name: SystemName,
  redis: RedisMode = 'standalone',
): Promise<Target> {
  if (name === 'threshold') return startThreshold(redis);
  if (name === 'raw') return startRaw();
  return startSocketIo(name === 'socketio-streams' ? 'streams' : 'pubsub');
}

async function startThreshold(redis: RedisMode): Promise<Target> {
  // The subscribers' process starts while the nodes do; it learns their URLs when it subscribes.
  const subs = subscriberClient('threshold');
  const cluster = await ThresholdCluster.start(NODES, {}, redis);
  const urls = cluster.nodes.map((n) => n.wsUrl);
  return {
    processes: cluster.processes,
    clients: [{ name: subs.client.name, pid: subs.client.pid }],
    publisher: { system: 'threshold', urls, partitions: 0 },
    async subscribe(roomIds, perRoom) {
      // Rooms are created in chunks, each chunk's subscribers connecting while the next is
      // created: the two halves of setting up 10,000 rooms overlap.
      let subscribing = Promise.resolve();
      for (let i = 0; i < roomIds.length; i += SETUP_CHUNK) {
        const chunk = roomIds.slice(i, i + SETUP_CHUNK);
        await cluster.createRooms(chunk);
        await subscribing;
        subscribing = subs.subscribe(urls, chunk, perRoom);
        // Awaited on the next turn; meanwhile a failure must not count as unhandled.
        subscribing.catch(() => undefined);
      }
      await subscribing;
    },
    window: subs.window,
    report: subs.report,
    committed: (publisher) => publisher.call<number>('acked'),
    async stop() {
      await subs.client.stop();
      await cluster.stop();
    },
  };
}

async function startRaw(): Promise<Target> {
  const nodes: BenchChild[] = Array.from({ length: NODES }, (_, i) =>
    forkBench(`raw node-${i + 1}`, 'systems/raw-node.ts', 'server'),
  );
  const redis = await startBenchRedis();
  const per = PARTITIONS / NODES;
  await Promise.all(
    nodes.map((node, j) =>
      node.call('start', {
        url: redis.url,
        name: `node-${j + 1}`,
        partitions: Array.from({ length: per }, (_, p) => j * per + p),
      } satisfies RawNodeParams),
    ),
  );
  return {
    processes: [...nodes.map((n) => ({ name: n.name, pid: n.pid })), ...redis.servers],
    clients: [],
    publisher: { system: 'raw', urls: [redis.url], partitions: PARTITIONS },
    async subscribe(rooms, perRoom) {
      await Promise.all(
        nodes.map((node, j) => {
          // The same spread as the WebSocket subscribers (subscribers.ts): subscriber s =
          // k × rooms + i (the k-th of room i) on node (k + s) mod NODES.
          const local = rooms.map((room, i): [string, number] => {
            let n = 0;
            for (let k = 0; k < perRoom; k++) if ((k + k * rooms.length + i) % NODES === j) n++;
            return [room, n];
          });
          return node.call('subscribe', { rooms: local.filter(([, n]) => n > 0) });
        }),
      );
    },
    async window(w) {
      await Promise.all(nodes.map((n) => n.call('window', w)));
    },
    report: () => Promise.all(nodes.map((n) => n.call<Receipts>('report'))),
    async committed() {
      const counts = await Promise.all(nodes.map((n) => n.call<number>('committed')));
      return counts.reduce((a, b) => a + b, 0);
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      await redis.stop();
    },
  };
}

/** Socket.IO server processes sharing one Redis through `adapter`. */
export async function startSocketIoServers(count: number, adapter: SocketIoAdapter) {
  const servers = Array.from({ length: count }, (_, i) =>
    forkBench(`socket.io server-${i + 1}`, 'systems/socketio-server.ts', 'server'),
  );
  const redis = await startBenchRedis();
  const ports = await Promise.all(
    servers.map((s) => s.call<{ port: number }>('start', { redisUrl: redis.url, adapter })),
  );
  return {
    processes: [...servers.map((s) => ({ name: s.name, pid: s.pid })), ...redis.servers],
    urls: ports.map(({ port }) => `http://127.0.0.1:${port}`),
    async stop() {
      await Promise.all(servers.map((s) => s.stop()));
      await redis.stop();
    },
  };
}

async function startSocketIo(adapter: SocketIoAdapter): Promise<Target> {
  const subs = subscriberClient('socketio');
  const io = await startSocketIoServers(NODES, adapter);
  return {
    processes: io.processes,
    clients: [{ name: subs.client.name, pid: subs.client.pid }],
    publisher: { system: 'socketio', urls: io.urls, partitions: 0 },
    subscribe: (rooms, perRoom) => subs.subscribe(io.urls, rooms, perRoom),
    window: subs.window,
    report: subs.report,
    async stop() {
      await subs.client.stop();
      await io.stop();
    },
  };
}
