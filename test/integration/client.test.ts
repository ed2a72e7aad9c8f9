import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, onTestFinished, vi } from 'vitest';
import { WebSocket } from 'ws';
import {
  type RoomMessage,
  ThresholdClient,
  ThresholdClientError,
  type WebSocketConstructor,
} from '../../src/client/index.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { runThreshold } from '../helpers/process.ts';
import { readmeBlocks, ROOT, tempDir } from '../helpers/readme.ts';
import { freePort } from '../helpers/ports.ts';

/** Deliveries are awaited, not timed: a loaded CI machine (the Redis Cluster tier) is slow. */
const UNTIL = { timeout: 10_000, interval: 100 };

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
    await vi.waitFor(() => expect(seen.map((m) => m.seq)).toEqual([1, 2]), UNTIL);
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
    await vi.waitFor(() => expect(seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]), UNTIL);
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
    await vi.waitFor(
      () => expect(errors.map((e) => [e.code, e.details.room])).toEqual([['forbidden', 'attic']]),
      UNTIL,
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
    }, UNTIL);
    // A room she joins while connected arrives from its first message.
    await node.createRoom('garden', []);
    await post(node, 'garden', 'before she joined');
    expect((await node.admin('PUT', '/v1/rooms/garden/members/user:ann')).status).toBe(201);
    await post(node, 'garden', 'after');
    await vi.waitFor(
      () => expect(seen.filter((s) => s.startsWith('garden:'))).toEqual(['garden:1', 'garden:2']),
      UNTIL,
    );
    client.read('garden', 2);
    await vi.waitFor(
      () => expect(reads).toContainEqual({ room: 'garden', member: 'user:ann', seq: 2 }),
      UNTIL,
    );
  });
});

describe('the README client example', () => {
  it('runs as written against a node in development mode', async () => {
    const [example] = readmeBlocks('## Client library');
    expect(example).toContain("from 'threshold/client'");
    const port = await freePort();
    const node = runThreshold(['node'], {
      THRESHOLD_PORT: String(port),
      THRESHOLD_DATA_DIR: await tempDir('client-readme'),
    });
    await node.waitFor(/relay node started/);
    const base = `http://127.0.0.1:${port}`;
    const json = { 'content-type': 'application/json' };
    await fetch(`${base}/v1/rooms`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ id: 'garden' }),
    });
    await fetch(`${base}/v1/rooms/garden/members/user:alice`, { method: 'PUT' });
    await fetch(`${base}/v1/rooms/garden/messages?wait=1`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ body: 'Seedlings are in!' }),
    });

    // As a user copies it, but on this node's port; it runs outside the package, so the
    // imports name the files; it closes the client once its own message is back.
    const script =
      example!
        .replaceAll('localhost:8080', `127.0.0.1:${port}`)
        .replace("from 'ws'", `from '${join(ROOT, 'node_modules/ws/wrapper.mjs')}'`)
        .replace("from 'threshold/client'", `from '${join(ROOT, 'src/client/index.ts')}'`) +
      `await new Promise((r) => setTimeout(r, 1000));\nclient.close();\n`;
    const file = join(await tempDir('client-example'), 'example.mts');
    await writeFile(file, script);
    const { stdout } = await promisify(execFile)(join(ROOT, 'node_modules/.bin/tsx'), [file], {
      timeout: 30_000,
    });
    expect(stdout.split('\n')).toEqual([
      'connecting',
      'open',
      '1 Seedlings are in!',
      '2 Tomatoes next',
      'closed',
      '',
    ]);
  });
});
