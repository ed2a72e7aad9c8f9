/**
 * The ingress peer: the least HTTP server on Threshold's own stack (Hono, `@hono/node-server`,
 * ioredis) that does what its ingress does at its core. `POST /v1/rooms/:room/messages` reads
 * the JSON body, XADDs `room` and `body` to the room's partition stream (64 partitions, the
 * same crc32 hash as Threshold's) and answers 202 `{id, status: "accepted"}` with the entry's
 * id: one XADD per request, and nothing else (no auth, no validation, no room lookup, no
 * envelope, no idempotence key, no consumer). Its figures are the data path's ceiling for
 * ingress on this machine, not a peer's.
 */
import type { AddressInfo } from 'node:net';
import { serve as serveHttp } from '@hono/node-server';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import { partitionOf } from '../../src/redis/keys.ts';
import { serve } from '../lib/processes.ts';

export interface MinimalHttpParams {
  redisUrl: string;
  partitions: number;
}

serve({
  async start(p: MinimalHttpParams) {
    const redis = new Redis(p.redisUrl, { lazyConnect: true });
    await redis.connect();
    const app = new Hono();
    app.post('/v1/rooms/:room/messages', async (c) => {
      const room = c.req.param('room');
      const { body } = await c.req.json<{ body: unknown }>();
      const id = await redis.xadd(
        `min:{p${partitionOf(room, p.partitions)}}:funnel`,
        '*',
        'room',
        room,
        'body',
        typeof body === 'string' ? body : JSON.stringify(body),
      );
      return c.json({ id, status: 'accepted' }, 202);
    });
    const server = await new Promise<ReturnType<typeof serveHttp>>((resolve) => {
      const s = serveHttp({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    process.once('SIGTERM', () => {
      redis.disconnect();
      server.close();
      process.exit(0);
    });
    return { port: (server.address() as AddressInfo).port };
  },
});
