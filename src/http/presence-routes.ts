import type { Hono } from 'hono';
import { assertMayRead } from '../rooms/access.ts';
import type { RoomsStore } from '../rooms/store.ts';
import type { AppEnv } from './app.ts';
import { readerOf, roomParam } from './params.ts';

export interface PresenceRoutesDeps {
  rooms: Pick<RoomsStore, 'get' | 'isMember'>;
  /** The room's members with a live WebSocket on some node, sorted (delivery/presence.ts). */
  presence: { room(room: string): Promise<string[]> };
}

/** `GET /v1/rooms/:room/presence` (DESIGN §5): for the admin or a member of the room. */
export function mountPresence(app: Hono<AppEnv>, { rooms, presence }: PresenceRoutesDeps): void {
  app.get('/v1/rooms/:room/presence', async (c) => {
    const room = roomParam(c);
    await assertMayRead(rooms, room, readerOf(c.get('principal')));
    return c.json({ room, online: await presence.room(room) });
  });
}
