import { describe, expect, it, vi } from 'vitest';
import { backoffDelay, DEFAULT_BACKOFF } from '../../src/client/backoff.ts';
import {
  type RoomMessage,
  ThresholdClient,
  type ThresholdClientError,
  type WebSocketLike,
} from '../../src/client/index.ts';

/** A socket the test drives: it opens, receives and closes when told. */
class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close() {
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(frame: unknown) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
}

const message = (room: string, seq: number) => ({
  type: 'message',
  room,
  seq,
  id: `m${seq}`,
  sender: { kind: 'user', id: 'bea' },
  kind: 'chat',
  body: `b${seq}`,
  ts: 0,
});

/** A client whose /v1/connect always names `ws://node/v1/ws`, on fake sockets and timers. */
function fakeClient() {
  FakeSocket.all = [];
  const client = new ThresholdClient({
    url: 'http://node',
    token: 'jwt',
    WebSocket: FakeSocket,
    fetch: async () => Response.json({ url: 'ws://node/v1/ws' }),
    pingIntervalMs: 0,
  });
  /** Lets the connection attempt run (its fetch) and opens the socket it made. */
  const openNext = async () => {
    const before = FakeSocket.all.length;
    for (let i = 0; i < 1000 && FakeSocket.all.length === before; i++)
      await vi.advanceTimersByTimeAsync(10);
    expect(FakeSocket.all).toHaveLength(before + 1);
    const socket = FakeSocket.all.at(-1)!;
    socket.open();
    return socket;
  };
  return { client, openNext };
}

describe('backoffDelay', () => {
  it('waits between half the ceiling and the ceiling, doubling up to maxMs', () => {
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => 0)).toBe(125);
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => 1)).toBe(250);
    expect(backoffDelay(3, DEFAULT_BACKOFF, () => 1)).toBe(2000);
    expect(backoffDelay(20, DEFAULT_BACKOFF, () => 0)).toBe(5000);
    expect(backoffDelay(1000, DEFAULT_BACKOFF, () => 1)).toBe(10_000);
  });
});

describe('ThresholdClient (fake sockets)', () => {
  it('resubscribes with since = the last seq delivered and drops what the app already had', async () => {
    vi.useFakeTimers();
    try {
      const { client, openNext } = fakeClient();
      const seen: number[] = [];
      client.subscribe('r', (m: RoomMessage) => seen.push(m.seq));
      const connected = client.connect();
      const first = await openNext();
      await connected;
      expect(first.url).toBe('ws://node/v1/ws?token=jwt');
      expect(first.sent).toEqual([{ type: 'subscribe', room: 'r' }]);
      first.receive({ type: 'subscribed', room: 'r', seq: 4 });
      for (const seq of [4, 5, 6]) first.receive(message('r', seq));
      first.drop(1006);

      const second = await openNext();
      expect(second.sent).toEqual([{ type: 'subscribe', room: 'r', since: 6 }]);
      second.receive({ type: 'subscribed', room: 'r', seq: 8 });
      for (const seq of [5, 6, 7, 8]) second.receive(message('r', seq));
      expect(seen).toEqual([5, 6, 7, 8]);
      client.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('resends an unacked publish under the same id after a reconnect, and on unavailable', async () => {
    vi.useFakeTimers();
    try {
      const { client, openNext } = fakeClient();
      const connected = client.connect();
      const first = await openNext();
      await connected;
      const published = client.publish('r', 'hi', { id: 'p1' });
      expect(first.sent).toEqual([{ type: 'publish', room: 'r', body: 'hi', id: 'p1' }]);
      first.drop(1001);
      const second = await openNext();
      expect(second.sent).toEqual([{ type: 'publish', room: 'r', body: 'hi', id: 'p1' }]);
      second.receive({ type: 'error', code: 'unavailable', message: 'x', id: 'p1', room: 'r' });
      await vi.advanceTimersByTimeAsync(DEFAULT_BACKOFF.maxMs);
      expect(second.sent).toHaveLength(2);
      second.receive({ type: 'ack', id: 'p1', seq: 9 });
      expect(await published).toEqual({ seq: 9, id: 'p1' });

      const refused = client.publish('r', 'no', { id: 'p2' }).catch((e: unknown) => e);
      second.receive({ type: 'error', code: 'forbidden', message: 'not a member', id: 'p2' });
      expect(await refused).toMatchObject({ name: 'ThresholdClientError', code: 'forbidden' });
      client.close();
    } finally {
      vi.useRealTimers();
    }
  });

  it('stops on 4001 (revoked) and rejects unacked publishes', async () => {
    vi.useFakeTimers();
    try {
      const { client, openNext } = fakeClient();
      const errors: ThresholdClientError[] = [];
      client.on('error', (e) => errors.push(e));
      const connected = client.connect();
      const socket = await openNext();
      await connected;
      const published = client.publish('r', 'hi').catch((e: unknown) => e);
      socket.drop(4001);
      expect(errors.map((e) => e.code)).toEqual(['revoked']);
      expect(client.status).toBe('closed');
      expect(await published).toMatchObject({ code: 'closed' });
      await vi.advanceTimersByTimeAsync(DEFAULT_BACKOFF.maxMs * 2);
      expect(FakeSocket.all).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
