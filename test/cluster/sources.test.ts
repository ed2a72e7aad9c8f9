import { describe, expect, it } from 'vitest';
import { admin, sleep, startMesh } from '../helpers/mesh.ts';
import { configFile, readmeExample } from '../helpers/readme-example.ts';

const COUNT = 60;
const TTL_MS = 1500;

interface Page {
  messages: { seq: number; id: string; body: string; sender: { kind: string; id: string } }[];
}

describe('message source plug-ins', () => {
  it("the README's one-node source runs on one node of two, commits each message once, and moves when its node is killed", async () => {
    const config = await configFile(
      {
        sources: [
          {
            name: 'ticker',
            module: './ticker.mjs',
            options: { room: 'ticks', count: COUNT, everyMs: 40 },
          },
        ],
      },
      { 'ticker.mjs': await readmeExample('ticker.mjs') },
    );
    const mesh = await startMesh(2, {
      THRESHOLD_CONFIG: config,
      THRESHOLD_MESH_LEASE_TTL_MS: String(TTL_MS),
      THRESHOLD_MESH_NODE_TTL_MS: String(TTL_MS),
      THRESHOLD_MESH_HEARTBEAT_MS: '250',
    });
    const [first] = mesh.nodes;
    expect((await admin(first!, 'POST', '/v1/rooms', { id: 'ticks' })).status).toBe(201);

    const history = async (node = mesh.nodes[0]!) =>
      ((await (await admin(node, 'GET', '/v1/rooms/ticks/messages?limit=1000')).json()) as Page)
        .messages;
    const holder = async (node: (typeof mesh.nodes)[number]) =>
      (await mesh.cluster(node)).sources.ticker;

    // Both nodes name the same one; let it get going.
    for (let i = 0; i < 100 && (await history()).length < 10; i++) await sleep(50);
    const running = await holder(mesh.nodes[0]!);
    expect(running).toBeTruthy();
    expect(await holder(mesh.nodes[1]!)).toBe(running);

    const victim = mesh.nodes.find((n) => n.id === running)!;
    mesh.signal(victim, 'SIGKILL');
    const survivor = mesh.nodes[0]!;
    const killedAt = Date.now();
    let movedAfter = -1;
    while (Date.now() - killedAt < 15_000) {
      if ((await holder(survivor)) === survivor.id) {
        movedAfter = Date.now() - killedAt;
        break;
      }
      await sleep(50);
    }
    console.log(`[sources] moved ${victim.id} → ${survivor.id} after ${movedAfter} ms`);
    expect(movedAfter).toBeGreaterThanOrEqual(0);
    // The lease expires, and the dead node leaves the live set, within the ttl; then a heartbeat.
    expect(movedAfter).toBeLessThan(TTL_MS + 250 * 4 + 1000);

    let messages = await history(survivor);
    for (let i = 0; i < 200 && messages.length < COUNT; i++) {
      await sleep(100);
      messages = await history(survivor);
    }
    // Every tick once, in order, though the survivor published 1, 2, … again from the start.
    expect(messages.map((m) => m.body)).toEqual(
      Array.from({ length: COUNT }, (_, i) => `tick ${i + 1}`),
    );
    expect(messages.map((m) => m.id)).toEqual(
      Array.from({ length: COUNT }, (_, i) => `ticker:tick-${i + 1}`),
    );
    expect(messages[0]?.sender).toEqual({ kind: 'service', id: 'ticker' });
  });
});
