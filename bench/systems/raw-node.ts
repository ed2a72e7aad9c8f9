/**
 * The raw pipeline, one "node": the minimal ioredis program doing Threshold's data path with
 * nothing else. It owns a set of partition streams and, per batch, reads them with
 * XREADGROUP (one call over all its streams, COUNT 256, BLOCK 1 s) and answers with one
 * pipeline of PUBLISH (to the room's channel) + XACK per entry. It also SUBSCRIBEs to the
 * channels of the rooms that have subscribers on it and hands each message to its in-process
 * subscribers (a counter and a latency record each): no envelope, no validation, no lease,
 * no seq, no history, no receipts, no WebSocket.
 */
import { Redis } from 'ioredis';
import { serve } from '../lib/processes.ts';
import { Receiver, type ReceiverWindow } from '../lib/receiver.ts';
import { stampAt } from '../lib/stamp.ts';

export interface RawNodeParams {
  url: string;
  name: string;
  partitions: number[];
}

const GROUP = 'relay';
const CHANNEL = 'raw:live:';
const receiver = new Receiver();
let committed = 0;

async function consume(redis: Redis, name: string, partitions: number[]): Promise<void> {
  const streams = partitions.map((p) => `raw:{p${p}}:funnel`);
  for (const s of streams) {
    await redis.xgroup('CREATE', s, GROUP, '$', 'MKSTREAM').catch((err: Error) => {
      if (!err.message.includes('BUSYGROUP')) throw err;
    });
  }
  const ids = streams.map(() => '>');
  for (;;) {
    // prettier-ignore
    const reply = (await redis.xreadgroup(
      'GROUP', GROUP, name, 'COUNT', 256, 'BLOCK', 1000, 'STREAMS', ...streams, ...ids,
    )) as [string, [string, string[]][]][] | null;
    if (!reply) continue;
    const pipe = redis.pipeline();
    let batch = 0;
    for (const [stream, entries] of reply) {
      for (const [id, fields] of entries) {
        // Fields as the publisher writes them: room, <room>, body, <body>.
        pipe.publish(CHANNEL + fields[1], fields[3] as string);
        pipe.xack(stream, GROUP, id);
        batch++;
      }
    }
    await pipe.exec();
    // Committed once acknowledged, as Threshold counts a publish once its commit is acked.
    committed += batch;
  }
}

/** Subscribers here per room channel (rooms with none here are not subscribed to). */
const local = new Map<string, number>();
let sub: Redis | undefined;

async function subscribe(rooms: [room: string, subscribers: number][]): Promise<void> {
  if (!sub) throw new Error('start first');
  const channels = rooms.map(([room, n]) => {
    local.set(CHANNEL + room, n);
    return CHANNEL + room;
  });
  for (let i = 0; i < channels.length; i += 1000)
    await sub.subscribe(...channels.slice(i, i + 1000));
}

serve({
  async start(p: RawNodeParams) {
    const reader = new Redis(p.url);
    // Ready before it subscribes: ioredis 5 can lose a SUBSCRIBE sent while its handshake is
    // still going (redis/ioredis#2037); one node in three heard nothing in a quick run.
    const subscriber = new Redis(p.url, { lazyConnect: true });
    await subscriber.connect();
    subscriber.on('message', (channel: string, payload: string) => {
      const n = local.get(channel) ?? 0;
      const stamp = stampAt(payload);
      for (let i = 0; i < n; i++) receiver.receive(stamp);
    });
    sub = subscriber;
    void consume(reader, p.name, p.partitions).catch((err) => {
      console.error(err);
      process.exit(1);
    });
    process.once('SIGTERM', () => {
      for (const c of [reader, subscriber]) c.disconnect();
      process.exit(0);
    });
  },
  /** Rooms with subscribers here, and how many subscribers each has here. */
  subscribe: (p: { rooms: [room: string, subscribers: number][] }) => subscribe(p.rooms),
  committed: () => committed,
  window: (p: ReceiverWindow) => receiver.window(p),
  report: () => receiver.report(),
});
