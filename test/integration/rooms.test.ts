import { describe, expect, it } from 'vitest';
import { startTestNode } from '../helpers/node.ts';

describe('rooms admin API', () => {
  it('lets a phone number serve one room only, and frees it when the room is deleted', async () => {
    const node = await startTestNode({ name: 'rooms numbers' });
    const create = (id: string, numbers: string[]) =>
      node.admin('POST', '/v1/rooms', { id, name: `Room ${id}`, numbers });
    const first = await create('garden', ['+15550001111', '+15550001111']);
    expect(first.status).toBe(201);
    expect(await first.json()).toMatchObject({ id: 'garden', numbers: ['+15550001111'] });
    const clash = await create('orchard', ['+15550001111']);
    expect(clash.status).toBe(409);
    expect(((await clash.json()) as { detail: string }).detail).toMatch(
      /already serves another room/,
    );
    expect((await node.admin('GET', '/v1/rooms/orchard')).status).toBe(404);

    expect((await node.admin('DELETE', '/v1/rooms/garden')).status).toBe(204);
    expect((await create('orchard', ['+15550001111'])).status).toBe(201);
  });

  it('lists, reads and deletes rooms, and manages members', async () => {
    const node = await startTestNode({ name: 'rooms crud' });
    await node.createRoom('alpha', ['user:ann', 'phone:+15550002222']);
    await node.createRoom('beta');
    const list = (await (await node.admin('GET', '/v1/rooms')).json()) as {
      rooms: { id: string }[];
    };
    expect(list.rooms.map((r) => r.id)).toEqual(['alpha', 'beta']);
    expect(await (await node.admin('GET', '/v1/rooms/alpha')).json()).toMatchObject({
      id: 'alpha',
      members: 2,
      seq: 0,
    });
    expect(await (await node.admin('GET', '/v1/rooms/alpha/members')).json()).toEqual({
      room: 'alpha',
      members: ['phone:+15550002222', 'user:ann'],
    });
    expect((await node.admin('PUT', '/v1/rooms/alpha/members/user:ann')).status).toBe(200);
    expect((await node.admin('DELETE', '/v1/rooms/alpha/members/user:ann')).status).toBe(204);
    expect((await node.admin('DELETE', '/v1/rooms/alpha/members/user:ann')).status).toBe(404);
    expect((await node.admin('PUT', '/v1/rooms/alpha/members/bob')).status).toBe(400);
    expect((await node.admin('POST', '/v1/rooms', { id: 'beta' })).status).toBe(409);
    expect((await node.admin('DELETE', '/v1/rooms/beta')).status).toBe(204);
    expect((await node.admin('GET', '/v1/rooms/beta')).status).toBe(404);
    expect((await node.admin('DELETE', '/v1/rooms/beta')).status).toBe(404);
  });
});
