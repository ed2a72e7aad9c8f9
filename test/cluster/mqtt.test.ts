import { connectAsync } from 'mqtt';
import { describe, expect, it, onTestFinished } from 'vitest';
import { admin, sleep, startMesh } from '../helpers/mesh.ts';
import { startMosquitto } from '../helpers/mosquitto.ts';
import { sign } from 'hono/jwt';
import { JWT_SECRET } from '../helpers/node.ts';
import { configFile } from '../helpers/readme-example.ts';
import { connect } from '../helpers/ws-client.ts';

const COUNT = 200;

describe('MQTT source on a mesh', () => {
  it('messages published to Mosquitto reach WebSocket subscribers in order, none lost or doubled across a kill of the node running the source', async () => {
    const broker = await startMosquitto();
    const config = await configFile(
      {
        sources: [
          {
            name: 'sensors',
            module: 'mqtt',
            options: { url: broker.url, topic: 'threshold/rooms/+/messages' },
          },
        ],
      },
      {},
    );
    const mesh = await startMesh(2, {
      THRESHOLD_CONFIG: config,
      THRESHOLD_MESH_LEASE_TTL_MS: '1500',
      THRESHOLD_MESH_NODE_TTL_MS: '1500',
      THRESHOLD_MESH_HEARTBEAT_MS: '250',
    });
    expect((await admin(mesh.nodes[0]!, 'POST', '/v1/rooms', { id: 'greenhouse' })).status).toBe(
      201,
    );
    expect(
      (await admin(mesh.nodes[0]!, 'PUT', '/v1/rooms/greenhouse/members/user:watcher')).status,
    ).toBe(201);
    let running: string | null | undefined;
    for (let i = 0; i < 100 && !running; i++) {
      running = (await mesh.cluster(mesh.nodes[0]!)).sources.sensors;
      if (!running) await sleep(50);
    }
    const victim = mesh.nodes.find((n) => n.id === running)!;
    const survivor = mesh.nodes.find((n) => n.id !== running)!;
    // The subscriber is on the node that lives.
    const ws = await connect(
      survivor.wsUrl,
      await sign({ sub: 'user:watcher' }, JWT_SECRET, 'HS256'),
    );
    ws.send({ type: 'subscribe', room: 'greenhouse', since: 0 });
    await ws.next((f) => f.type === 'subscribed');

    const producer = await connectAsync(broker.url, { clientId: 'greenhouse-sensor' });
    onTestFinished(() => producer.endAsync());
    for (let i = 1; i <= COUNT; i++) {
      const payload = JSON.stringify({ id: `reading-${i}`, body: `reading ${i}` });
      await producer.publishAsync('threshold/rooms/greenhouse/messages', payload, { qos: 1 });
      if (i === COUNT / 2) mesh.signal(victim, 'SIGKILL');
      await sleep(5);
    }

    const got = await ws.take(COUNT, (f) => f.type === 'message', 30_000);
    expect(got.map((f) => f.body)).toEqual(
      Array.from({ length: COUNT }, (_, i) => `reading ${i + 1}`),
    );
    expect(got.map((f) => f.seq)).toEqual(Array.from({ length: COUNT }, (_, i) => i + 1));
    expect(got[0]).toMatchObject({
      id: 'sensors:reading-1',
      sender: { kind: 'service', id: 'sensors' },
    });
    expect((await mesh.cluster(survivor)).sources.sensors).toBe(survivor.id);
    // Nothing more arrives (no double of a message redelivered after the kill).
    await sleep(500);
    expect(ws.frames.filter((f) => f.type === 'message')).toHaveLength(COUNT);
    await ws.close();
  });
});
