import { Cluster, Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { sign } from 'hono/jwt';
import { Keys } from '../../src/redis/keys.ts';
import { eventually } from '../helpers/eventually.ts';
import { admin, TestMesh } from '../helpers/mesh.ts';
import { JWT_SECRET } from '../helpers/node.ts';
import { startRedisCluster } from '../helpers/redis-cluster.ts';
import { connect } from '../helpers/ws-client.ts';

describe('Redis Cluster', () => {
  it("a test cluster of three masters: the partitions' hash tags spread rooms over all three", async () => {
    const cluster = await startRedisCluster(3);
    const client = new Cluster(
      cluster.urls.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })),
    );
    try {
      const keys = new Keys('spread:', 64);
      for (let i = 0; i < 300; i++) await client.hset(keys.room(`room-${i}`), 'name', `room ${i}`);
      const sizes: number[] = [];
      for (const url of cluster.urls) {
        const master = new Redis(url);
        sizes.push(await master.dbsize());
        master.disconnect();
      }
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(300);
      expect(Math.min(...sizes)).toBeGreaterThan(0);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(3 * Math.min(...sizes));
    } finally {
      client.disconnect();
    }
  });

  it('two relay nodes on different masters: HTTP and WebSocket publishes commit in order, a subscriber on the other node gets every message, history is complete', async () => {
    const cluster = await startRedisCluster(3);
    const mesh = new TestMesh(cluster.masters[0]!);
    const a = await mesh.add({ THRESHOLD_REDIS_URL: cluster.urls[0] });
    const b = await mesh.add({ THRESHOLD_REDIS_URL: cluster.urls[1] });
    // Rooms in partitions of every master.
    const rooms = Array.from({ length: 6 }, (_, i) => `spread-${i}`);
    for (const room of rooms) {
      expect((await admin(a, 'POST', '/v1/rooms', { id: room })).status).toBe(201);
      for (const m of ['user:ana', 'user:bo'])
        expect((await admin(b, 'PUT', `/v1/rooms/${room}/members/${m}`)).status).toBe(201);
    }
    const token = (sub: string) =>
      sign({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET, 'HS256');
    const subscriber = await connect(b.wsUrl, await token('user:bo'));
    for (const room of rooms) {
      subscriber.send({ type: 'subscribe', room });
      await subscriber.next((f) => f.type === 'subscribed' && f.room === room);
    }
    const publisher = await connect(a.wsUrl, await token('user:ana'));
    const perRoom = 10;
    for (const room of rooms) {
      for (let i = 1; i <= perRoom / 2; i++) {
        const res = await admin(a, 'POST', `/v1/rooms/${room}/messages?wait=1`, {
          body: `http ${i}`,
        });
        expect(res.status).toBe(201);
        expect(await res.json()).toMatchObject({ seq: i });
      }
      for (let i = perRoom / 2 + 1; i <= perRoom; i++) {
        publisher.send({ type: 'publish', room, body: `ws ${i}`, id: `${room}-${i}` });
        expect(
          await publisher.next((f) => f.type === 'ack' && f.id === `${room}-${i}`),
        ).toMatchObject({ seq: i });
      }
    }
    const expected = Array.from({ length: perRoom }, (_, i) => i + 1);
    for (const room of rooms) {
      // The frames of every room arrive interleaved: count them, rather than walk a cursor.
      await eventually(
        `${room}: ${perRoom} messages at the subscriber`,
        async () => subscriber.frames.filter((f) => f.type === 'message' && f.room === room).length,
        (n) => n >= perRoom,
      );
      const seen = subscriber.frames.filter((f) => f.type === 'message' && f.room === room);
      expect(seen.map((f) => f.seq)).toEqual(expected);
      const history = (await (
        await admin(b, 'GET', `/v1/rooms/${room}/messages?since=0&limit=100`)
      ).json()) as { messages: { seq: number; body: string }[] };
      expect(history.messages.map((m) => m.seq)).toEqual(expected);
      expect(history.messages[0]?.body).toBe('http 1');
      expect(history.messages[perRoom - 1]?.body).toBe(`ws ${perRoom}`);
    }
  }, 60_000);
});
