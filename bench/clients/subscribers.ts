/**
 * Load generator: WebSocket subscribers of Threshold or Socket.IO, spread round robin over
 * the servers' URLs, each in one room; counts receipts and their latency (lib/receiver.ts).
 * Also opens idle connections for the connections workload.
 */
import { io, type Socket } from 'socket.io-client';
import { WebSocket } from 'ws';
import { serve } from '../lib/processes.ts';
import { Receiver } from '../lib/receiver.ts';
import { now, stampOfFrame } from '../lib/stamp.ts';

export type ClientSystem = 'threshold' | 'socketio';

export interface SubscribeParams {
  system: ClientSystem;
  /** ws:// URLs (Threshold, query string included) or http:// URLs (Socket.IO). */
  urls: string[];
  rooms: string[];
  perRoom: number;
}

/** Connections opened at once (below the servers' default listen backlog, 511). */
const CONCURRENCY = 500;

const receiver = new Receiver();
const open: { close(): void }[] = [];

async function pool(count: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await one(next++);
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
}

function thresholdSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    open.push({ close: () => ws.terminate() });
  });
}

function socketIo(url: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false });
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
    open.push({ close: () => socket.disconnect() });
  });
}

async function subscribeThreshold(url: string, room: string): Promise<void> {
  const ws = await thresholdSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.on('message', (data) => {
      const text = data.toString();
      if (text.startsWith('{"type":"message"')) receiver.receive(stampOfFrame(text));
      else if (text.startsWith('{"type":"subscribed"')) resolve();
      else if (text.startsWith('{"type":"error"')) reject(new Error(text));
    });
    ws.send(JSON.stringify({ type: 'subscribe', room }));
  });
}

async function subscribeSocketIo(url: string, room: string): Promise<void> {
  const socket = await socketIo(url);
  socket.on('message', (m: { body: string }) => receiver.receive(Number(m.body.split('|', 1)[0])));
  await socket.timeout(10_000).emitWithAck('join', room);
}

serve({
  async subscribe(p: SubscribeParams) {
    const start = now();
    const total = p.rooms.length * p.perRoom;
    await pool(total, async (i) => {
      // Subscriber i: room i mod rooms, server i mod servers, so each room has members on both.
      const room = p.rooms[i % p.rooms.length] as string;
      const url = p.urls[(Math.floor(i / p.rooms.length) + i) % p.urls.length] as string;
      if (p.system === 'threshold') await subscribeThreshold(url, room);
      else await subscribeSocketIo(url, room);
    });
    return { connections: total, seconds: (now() - start) / 1000 };
  },

  /** Idle connections (no subscription): how many per second the server accepts. */
  async connectIdle(p: { system: ClientSystem; url: string; count: number }) {
    const start = now();
    await pool(p.count, async () => {
      if (p.system === 'threshold') await thresholdSocket(p.url);
      else await socketIo(p.url);
    });
    return { connections: p.count, perSecond: p.count / ((now() - start) / 1000) };
  },

  window: (p: { from: number; to: number }) => receiver.window(p),
  report: () => receiver.report(),

  close() {
    for (const c of open.splice(0)) c.close();
  },
});
