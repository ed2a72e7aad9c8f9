/**
 * Load generator: WebSocket subscribers of Threshold or Socket.IO, spread round robin over
 * the servers' URLs, each in one room; counts receipts and their latency (lib/receiver.ts).
 * Also opens idle connections for the connections workload.
 *
 * Both systems are received on bare `ws` sockets that read the stamp out of the text frame
 * with indexOf: socket.io-client's decoding costs several times Threshold's receiver per
 * delivery, and with every subscriber on the load generator's core it, not the servers,
 * would cap Socket.IO's throughput.
 */
import { WebSocket } from 'ws';
import { pool } from '../../test/helpers/pool.ts';
import { serve } from '../lib/processes.ts';
import { Receiver, type ReceiverWindow } from '../lib/receiver.ts';
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

function thresholdSocket(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Socket.IO v5 over Engine.IO v4, WebSocket transport only, default namespace. */
const SOCKET_IO_PATH = '/socket.io/?EIO=4&transport=websocket';
/** An Engine.IO message (4) holding a Socket.IO event (2) without an ack id. */
const SOCKET_IO_EVENT = '42["message",';

/**
 * A Socket.IO connection on a bare WebSocket: waits for the Engine.IO open packet (`0{…}`),
 * connects the default namespace (`40`, answered `40{"sid":…}`) and answers every ping (`2`)
 * with a pong (`3`). `onEvent` gets every other packet.
 */
function socketIo(url: string, onEvent: (text: string) => void = () => undefined) {
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + SOCKET_IO_PATH, {
      perMessageDeflate: false,
    });
    ws.once('error', reject);
    ws.on('message', (data) => {
      const text = data.toString();
      if (text === '2') ws.send('3');
      else if (text.startsWith('0{')) ws.send('40');
      else if (text.startsWith('40')) resolve(ws);
      else if (text.startsWith('44')) reject(new Error(`Socket.IO refused to connect: ${text}`));
      else onEvent(text);
    });
    ws.once('close', () => reject(new Error(`${url} closed before Socket.IO connected`)));
    // A server that accepts the WebSocket but never connects the namespace fails the setup.
    setTimeout(
      () => reject(new Error(`${url}: no Socket.IO connect in ${REPLY_TIMEOUT_MS} ms`)),
      REPLY_TIMEOUT_MS,
    ).unref();
  });
}

/** How long a server may take to confirm a subscription. */
const REPLY_TIMEOUT_MS = 10_000;

/**
 * A reply the subscriber waits for on `ws`: rejected when the socket closes first or the
 * server takes longer than {@link REPLY_TIMEOUT_MS}, so a stuck server fails the setup.
 */
function awaitReply(ws: WebSocket, what: string) {
  let resolve: () => void = () => undefined;
  let reject: (e: Error) => void = () => undefined;
  const promise = new Promise<void>((ok, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`${what}: no reply in ${REPLY_TIMEOUT_MS} ms`)),
      REPLY_TIMEOUT_MS,
    );
    const closed = () => fail(new Error(`${what}: connection closed`));
    ws.once('close', closed);
    const settle = () => {
      clearTimeout(timer);
      ws.off('close', closed);
    };
    resolve = () => (settle(), ok());
    reject = (e) => (settle(), fail(e));
  });
  return { promise, resolve, reject };
}

async function subscribeThreshold(url: string, room: string): Promise<void> {
  const ws = await thresholdSocket(url);
  const reply = awaitReply(ws, `subscribe ${room}`);
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('{"type":"message"')) receiver.receive(stampOfFrame(text));
    else if (text.startsWith('{"type":"subscribed"')) reply.resolve();
    else if (text.startsWith('{"type":"error"')) reply.reject(new Error(text));
  });
  ws.send(JSON.stringify({ type: 'subscribe', room }));
  await reply.promise;
}

/**
 * Joins `room` with the bench server's acknowledged `join` event (`421["join",room]`, answered
 * by the ack `431[]`); messages then arrive as `42["message",{"room":…,"body":…}]`.
 */
async function subscribeSocketIo(url: string, room: string): Promise<void> {
  let joined = () => undefined as void;
  const ws = await socketIo(url, (text) => {
    if (text.startsWith(SOCKET_IO_EVENT)) receiver.receive(stampOfFrame(text));
    else if (text === '431[]') joined();
  });
  const reply = awaitReply(ws, `join ${room}`);
  joined = reply.resolve;
  ws.send(`421${JSON.stringify(['join', room])}`);
  await reply.promise;
}

serve({
  async subscribe(p: SubscribeParams) {
    const start = now();
    const total = p.rooms.length * p.perRoom;
    await pool(total, CONCURRENCY, async (i) => {
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
    await pool(p.count, CONCURRENCY, async () => {
      if (p.system === 'threshold') await thresholdSocket(p.url);
      else await socketIo(p.url);
    });
    return { connections: p.count, perSecond: p.count / ((now() - start) / 1000) };
  },

  window: (p: ReceiverWindow) => receiver.window(p),
  report: () => receiver.report(),
});
