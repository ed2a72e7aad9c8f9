/**
 * The rooms the app listens to and the last seq each handler got: what makes delivery
 * once each, in seq order, across reconnects.
 */
import { ThresholdClientError } from './errors.ts';
import type { RoomMessage } from './types.ts';

type SubscriptionFrame =
  | { type: 'subscribe'; room: string; since?: number }
  | { type: 'subscribe'; rooms: 'mine' }
  | { type: 'unsubscribe'; room: string };

interface Subscription {
  handler: (message: RoomMessage) => void;
  /** The last seq handed to the app; undefined until the server says where the room is. */
  last: number | undefined;
}

export class Subscriptions {
  private readonly rooms = new Map<string, Subscription>();
  private mine: ((message: RoomMessage) => void) | undefined;
  /** Rooms the last `welcome` listed: under rooms "mine" their `subscribed` seq is the start. */
  private welcomeRooms = new Set<string>();

  constructor(
    /** Sends a frame if the socket is open; what is not sent now goes out with `resume()`. */
    private readonly send: (frame: SubscriptionFrame) => boolean,
    /** A handler threw. */
    private readonly error: (err: ThresholdClientError) => void,
  ) {}

  /** See `ThresholdClient.subscribe`. */
  add(room: string, handler: (message: RoomMessage) => void, since?: number): () => void {
    const sub: Subscription = { handler, last: since };
    this.rooms.set(room, sub);
    this.sendSubscribe(room, sub);
    return () => {
      if (this.rooms.get(room) !== sub) return;
      this.rooms.delete(room);
      this.send({ type: 'unsubscribe', room });
    };
  }

  /** See `ThresholdClient.subscribeMine`. */
  addMine(handler: (message: RoomMessage) => void): () => void {
    this.mine = handler;
    this.send({ type: 'subscribe', rooms: 'mine' });
    return () => {
      if (this.mine !== handler) return;
      this.mine = undefined;
      for (const [room, sub] of this.rooms)
        if (sub.handler === handler) {
          this.rooms.delete(room);
          this.send({ type: 'unsubscribe', room });
        }
    };
  }

  /** After (re)opening: every subscription with `since`. */
  resume(): void {
    for (const [room, sub] of this.rooms) this.sendSubscribe(room, sub);
    if (this.mine) this.send({ type: 'subscribe', rooms: 'mine' });
  }

  /** The server ended or refused a subscription: it is not resumed. */
  forget(room: string): void {
    this.rooms.delete(room);
  }

  welcome(rooms: string[]): void {
    this.welcomeRooms = new Set(rooms);
  }

  subscribed(room: string, seq: number): void {
    let sub = this.rooms.get(room);
    if (!sub && this.mine) this.rooms.set(room, (sub = { handler: this.mine, last: undefined }));
    // Without `since` the server starts after the seq it names, except for a room joined
    // under rooms "mine" while connected, which it sends from its first message.
    if (sub && sub.last === undefined)
      sub.last = !this.mine || this.welcomeRooms.has(room) || sub.handler !== this.mine ? seq : 0;
  }

  deliver(message: RoomMessage): void {
    const sub = this.rooms.get(message.room);
    if (!sub) return;
    // A replay after a reconnect may overlap what was delivered live: drop what the app had.
    if (sub.last !== undefined && message.seq <= sub.last) return;
    sub.last = message.seq;
    try {
      sub.handler(message);
    } catch (err) {
      // The message counts as delivered: a handler that throws does not get it again.
      this.error(
        new ThresholdClientError('handler', `the handler of room ${message.room} threw`, {
          room: message.room,
          cause: err,
        }),
      );
    }
  }

  private sendSubscribe(room: string, sub: Subscription): void {
    this.send(
      sub.last === undefined
        ? { type: 'subscribe', room }
        : { type: 'subscribe', room, since: sub.last },
    );
  }
}
