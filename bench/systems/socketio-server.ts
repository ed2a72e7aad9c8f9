/**
 * The Socket.IO peer: one server process, rooms joined with a `join` event (acknowledged),
 * a `publish` event broadcast with `io.to(room).emit('message', …)` across servers through
 * the Redis Streams adapter (`@socket.io/redis-streams-adapter`) or the classic pub/sub
 * adapter (`@socket.io/redis-adapter`).
 */
import { createServer } from 'node:http';
import { createAdapter as createPubSubAdapter } from '@socket.io/redis-adapter';
import { createAdapter as createStreamsAdapter } from '@socket.io/redis-streams-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { serve } from '../lib/processes.ts';

export type SocketIoAdapter = 'streams' | 'pubsub';

serve({
  async start(p: { redisUrl: string; adapter: SocketIoAdapter }) {
    // Connected before the adapter subscribes: ioredis 5 can lose a SUBSCRIBE sent while its
    // handshake is still going (redis/ioredis#2037), and that server would then hear nothing.
    const redis = new Redis(p.redisUrl, { lazyConnect: true });
    const sub = redis.duplicate();
    await Promise.all([redis.connect(), p.adapter === 'pubsub' ? sub.connect() : undefined]);
    const adapter =
      p.adapter === 'streams' ? createStreamsAdapter(redis) : createPubSubAdapter(redis, sub);
    const http = createServer();
    const io = new Server(http, { adapter, transports: ['websocket'] });
    io.on('connection', (socket) => {
      socket.on('join', (room: string, ack: () => void) => {
        void socket.join(room);
        ack();
      });
      socket.on('publish', (m: { room: string; body: string }) => {
        io.to(m.room).emit('message', m);
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const address = http.address();
    return { port: typeof address === 'object' && address ? address.port : 0 };
  },
});
