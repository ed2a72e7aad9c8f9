import { ForbiddenError, NotFoundError } from '../errors.ts';
import type { RoomsStore } from './store.ts';

/**
 * Who may read a room (its history, its live messages, a message's status): the admin, or a
 * member. Throws NotFoundError for a room that does not exist, ForbiddenError otherwise.
 */
export async function assertMayRead(
  rooms: Pick<RoomsStore, 'get' | 'isMember'>,
  room: string,
  reader: { member?: string | undefined; admin: boolean },
): Promise<void> {
  if (!reader.admin && reader.member && (await rooms.isMember(room, reader.member))) return;
  if (!(await rooms.get(room))) throw new NotFoundError(`room ${room} does not exist`);
  if (reader.admin) return;
  throw new ForbiddenError(`${reader.member ?? 'this client'} is not a member of room ${room}`);
}
