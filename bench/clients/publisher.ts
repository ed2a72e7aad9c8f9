/**
 * Load generator: publishes open-loop at a fixed rate into random rooms, each message stamped
 * with its intended send time (lib/stamp.ts). Threshold: `publish` frames over WebSocket
 * (one connection per node, acks read and counted); Socket.IO: a `publish` event (one
 * connection per server); raw pipeline: XADD to the room's partition stream.
 */
import { Redis } from 'ioredis';
import { io, type Socket } from 'socket.io-client';
import { WebSocket } from 'ws';
import { partitionOf } from '../../src/redis/keys.ts';
import { serve } from '../lib/processes.ts';
import { anyOf, body, openLoop } from '../lib/stamp.ts';

export type PublisherSystem = 'threshold' | 'socketio' | 'raw';

export interface ConnectParams {
  system: PublisherSystem;
  /** ws:// URLs with token (Threshold), http:// (Socket.IO), one redis:// URL (raw). */
  urls: string[];
  partitions: number;
}

export interface RunParams {
  rooms: string[];
  /** Messages per second. */
  rate: number;
  /** Epoch ms of the first intended send. */
  start: number;
  durationMs: number;
}

export interface RunResult {
  sent: number;
  /** Threshold: publishes acknowledged (committed) by the end of the run. */
  acked: number;
  /** How far the publisher fell behind its schedule at worst, ms. */
  maxLagMs: number;
}

type Send = (room: string, text: string) => void;

let send: Send = () => {
  throw new Error('connect first');
};
let acked = 0;

async function connectThreshold(urls: string[]): Promise<Send> {
  const sockets = await Promise.all(
    urls.map(
      (url) =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url, { perMessageDeflate: false });
          ws.once('open', () => resolve(ws));
          ws.once('error', reject);
          ws.on('message', (data) => {
            if (data.toString().startsWith('{"type":"ack"')) acked++;
          });
        }),
    ),
  );
  let i = 0;
  return (room, text) =>
    sockets[i++ % sockets.length]?.send(`{"type":"publish","room":"${room}","body":"${text}"}`);
}

async function connectSocketIo(urls: string[]): Promise<Send> {
  const sockets = await Promise.all(
    urls.map(
      (url) =>
        new Promise<Socket>((resolve, reject) => {
          const s = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
          s.once('connect', () => resolve(s));
          s.once('connect_error', reject);
        }),
    ),
  );
  let i = 0;
  return (room, text) => sockets[i++ % sockets.length]?.emit('publish', { room, body: text });
}

function connectRaw(url: string, partitions: number): Send {
  // Auto-pipelining batches the XADDs of one tick into one write: the load generator's side
  // (Threshold's publisher likewise writes its frames as they come, one socket each); without
  // it the raw publisher, not the pipeline, would be the limit at the top rates (README).
  const redis = new Redis(url, { enableAutoPipelining: true });
  const streams = new Map<string, string>();
  return (room, text) => {
    let stream = streams.get(room);
    if (!stream) {
      stream = `raw:{p${partitionOf(room, partitions)}}:funnel`;
      streams.set(room, stream);
    }
    void redis.xadd(stream, 'MAXLEN', '~', 1_000_000, '*', 'room', room, 'body', text);
  };
}

serve({
  async connect(p: ConnectParams) {
    if (p.system === 'threshold') send = await connectThreshold(p.urls);
    else if (p.system === 'socketio') send = await connectSocketIo(p.urls);
    else send = connectRaw(p.urls[0] as string, p.partitions);
  },

  async run(p: RunParams): Promise<RunResult> {
    const total = Math.floor((p.durationMs / 1000) * p.rate);
    acked = 0;
    const { sent, maxLagMs } = await openLoop(p.start, p.rate, total, (at) =>
      send(anyOf(p.rooms), body(at)),
    );
    return { sent, acked, maxLagMs };
  },

  acked: () => acked,
});
