import { z } from 'zod';
import { RoomId } from '../funnel/envelope.ts';
import { RoomSettings } from '../rooms/store.ts';

/*
 * The bodies of app.ts's room routes, in a file of their own: openapi.ts documents these
 * very schemas, and app.ts imports openapi.ts (to serve /openapi.json), so they cannot live
 * in app.ts without an import cycle.
 */

export const NewRoomBody = z
  .object({
    id: RoomId,
    name: z.string().min(1).max(200).optional(),
    numbers: z
      .array(z.string().regex(/^\+[1-9]\d{6,14}$/, 'expected an E.164 number such as +15551234567'))
      .max(50)
      .optional(),
    settings: RoomSettings.optional(),
  })
  .strict();

export const PublishBody = z
  .object({
    body: z.string().min(1, 'must not be empty'),
    media: z.array(z.url()).max(10).optional(),
    /** Admin only: a member id to publish as, or a service name. */
    sender: z.string().min(1).max(64).optional(),
  })
  .strict();
