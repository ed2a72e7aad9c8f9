import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { WebSocket } from 'ws';
import {
  type RoomMessage,
  ThresholdClient,
  ThresholdClientError,
  type WebSocketConstructor,
} from '../../src/client/index.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

/** `ws`'s WebSocket, keeping every socket it opens so a test can cut one. */
function recordingWebSocket(): { WebSocket: WebSocketConstructor; sockets: WebSocket[] } {
  const sockets: WebSocket[] = [];
  class Recording extends WebSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  }
  return { WebSocket: Recording, sockets };
}

function clientOf(node: TestNode, token: string, WebSocketImpl: WebSocketConstructor) {
  const client = new ThresholdClient({
    url: node.url,
    token: () => token,
    WebSocket: WebSocketImpl,
    backoff: { baseMs: 50, maxMs: 500 },
  });
  onTestFinished(() => client.close());
  return client;
}

const post = (node: TestNode, room: string, body: string) =>
  node.admin('POST', `/v1/rooms/${room}/messages?wait=1`, { body });

describe('ThresholdClient against one node', () => {
  it('subscribes, publishes with an ack, and resumes after a cut connection with no gap or repeat', async () => {
    const node = await startTestNode({ name: 'client basic' });
    await node.createRoom('porch', ['user:ann']);
    const { WebSocket: Recording, sockets } = recordingWebSocket();
    const client = clientOf(node, await node.token('user:ann'), Recording);
    const states: string[] = [];
    client.on('state', (s) => states.push(s));
    await client.connect();

    const seen: RoomMessage[] = [];
    client.subscribe('porch', (m) => seen.push(m), { since: 0 });
    expect((await post(node, 'porch', 'one')).status).toBe(201);
    const ack = await client.publish('porch', 'two');
    expect(ack.seq).toBe(2);
    await vi.waitFor(() => expect(seen.map((m) => m.seq)).toEqual([1, 2]));
    expect(seen[1]).toMatchObject({
      room: 'porch',
      body: 'two',
      sender: { kind: 'user', id: 'ann' },
    });

    // Cut the socket: messages committed meanwhile come from history, once each.
    sockets[0]!.terminate();
    await post(node, 'porch', 'three');
    await post(node, 'porch', 'four');
    const five = client.publish('porch', 'five');
    expect((await five).seq).toBe(5);
    await vi.waitFor(() => expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]));
    expect(sockets.length).toBe(2);
    expect(states).toEqual(['connecting', 'open', 'connecting', 'open']);
  });

  it('acks a publish sent again under the same id with the original seq', async () => {
    const node = await startTestNode({ name: 'client same id' });
    await node.createRoom('porch', ['user:ann']);
    const client = clientOf(node, await node.token('user:ann'), WebSocket);
    await client.connect();
    const first = await client.publish('porch', 'hello', { id: 'c-1' });
    const again = await client.publish('porch', 'hello', { id: 'c-1' });
    expect(again).toEqual(first);
    const next = await client.publish('porch', 'world');
    expect(next.seq).toBe(first.seq + 1);
    expect(next.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
  });

  it('rejects a publish with the server error, and reports a refused subscription', async () => {
    const node = await startTestNode({ name: 'client errors' });
    await node.createRoom('porch', ['user:ann']);
    await node.createRoom('attic', []);
    const client = clientOf(node, await node.token('user:ann'), WebSocket);
    const errors: ThresholdClientError[] = [];
    client.on('error', (e) => errors.push(e));
    await client.connect();
    const refused = await client.publish('attic', 'let me in').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ThresholdClientError);
    expect(refused).toMatchObject({ code: 'forbidden' });
    client.subscribe('attic', () => {});
    await vi.waitFor(() =>
      expect(errors.map((e) => [e.code, e.details.room])).toEqual([['forbidden', 'attic']]),
    );
  });

  it('subscribes rooms "mine", sends read markers and hears them', async () => {
    const node = await startTestNode({ name: 'client mine' });
    await node.createRoom('porch', ['user:ann', 'user:bea']);
    const client = clientOf(node, await node.token('user:ann'), WebSocket);
    const seen: string[] = [];
    const reads: unknown[] = [];
    client.on('read', (r) => reads.push(r));
    client.subscribeMine((m) => seen.push(`${m.room}:${m.seq}`));
    await client.connect();
    await vi.waitFor(async () => {
      await post(node, 'porch', 'ping');
      expect(seen.length).toBeGreaterThan(0);
    });
    // A room she joins while connected arrives from its first message.
    await node.createRoom('garden', []);
    await post(node, 'garden', 'before she joined');
    expect((await node.admin('PUT', '/v1/rooms/garden/members/user:ann')).status).toBe(201);
    await post(node, 'garden', 'after');
    await vi.waitFor(() =>
      expect(seen.filter((s) => s.startsWith('garden:'))).toEqual(['garden:1', 'garden:2']),
    );
    client.read('garden', 2);
    await vi.waitFor(() =>
      expect(reads).toContainEqual({ room: 'garden', member: 'user:ann', seq: 2 }),
    );
  });
});
