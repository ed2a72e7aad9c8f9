import { describe, expect, it } from 'vitest';
import { type WebSocket, WebSocket as WebSocketClient } from 'ws';
import { Keys } from '../../src/redis/keys.ts';
import { ADMIN_TOKEN, startTestNode, type TestNode } from '../helpers/node.ts';
import { scanKeys, useRedis } from '../helpers/redis.ts';
import { connect, type Frame, type TestClient } from '../helpers/ws-client.ts';

const shared = useRedis();

/** The client stops reading its socket: it answers no ping and drains nothing. */
function stopReading(ws: WebSocket): void {
  (ws as unknown as { _socket: { pause(): void } })._socket.pause();
}

/** Connects `member` to `node` and subscribes it to `room`. */
async function subscribed(node: TestNode, member: string, room: string): Promise<TestClient> {
  const client = await connect(
    node.wsUrl,
    member === 'admin' ? ADMIN_TOKEN : await node.token(member),
  );
  client.send({ type: 'subscribe', room });
  expect(await client.next()).toMatchObject({ type: 'subscribed', room });
  return client;
}

/**
 * The frames a client got after its `unsubscribed` frame, once a ping sent now is answered:
 * whatever the server sent before the pong has arrived by then.
 */
async function framesAfterUnsubscribed(client: TestClient): Promise<Frame[]> {
  client.send({ type: 'ping' });
  await client.next((f) => f.type === 'pong');
  const at = client.frames.findIndex((f) => f.type === 'unsubscribed');
  return client.frames.slice(at + 1).filter((f) => f.type !== 'pong');
}

describe('WebSocket sessions', () => {
  it('drops a peer that stops answering pings', async () => {
    const node = await startTestNode({
      name: 'ws heartbeat',
      overrides: { ws: { heartbeatMs: 300 } },
    });
    const quiet = await connect(node.wsUrl, await node.token('user:quiet'));
    const lively = await connect(node.wsUrl, await node.token('user:lively'));
    stopReading(quiet.ws);
    const metrics = () => fetch(`${node.url}/metrics`).then((r) => r.text());
    const deadline = Date.now() + 5000;
    while (!/^threshold_websocket_closed_total\{reason="heartbeat"\} 1$/m.test(await metrics())) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await metrics()).toMatch(/^threshold_websocket_connections 1$/m);
    lively.send({ type: 'ping' });
    expect(await lively.next()).toEqual({ type: 'pong' });
    quiet.ws.terminate();
  });

  it('closes a connection that sends a frame over the size limit with 1009', async () => {
    const node = await startTestNode({
      name: 'ws frame limit',
      overrides: { ws: { maxFrameBytes: 1024 } },
    });
    const client = await connect(node.wsUrl, await node.token('user:big'));
    client.send({ type: 'publish', room: 'lobby', body: 'x'.repeat(2000) });
    expect((await client.closed).code).toBe(1009);
  });

  it('stops sending a room after unsubscribe, and says so', async () => {
    const node = await startTestNode({ name: 'ws unsubscribe' });
    await node.createRoom('porch', ['user:ann']);
    const ann = await connect(node.wsUrl, await node.token('user:ann'));
    ann.send({ type: 'subscribe', room: 'porch' });
    expect(await ann.next()).toEqual({ type: 'subscribed', room: 'porch', seq: 0 });
    await node.admin('POST', '/v1/rooms/porch/messages?wait=1', { body: 'first' });
    expect(await ann.next()).toMatchObject({ type: 'message', seq: 1 });
    ann.send({ type: 'unsubscribe', room: 'porch' });
    expect(await ann.next()).toEqual({ type: 'unsubscribed', room: 'porch' });
    await node.admin('POST', '/v1/rooms/porch/messages?wait=1', { body: 'second' });
    ann.send({ type: 'ping' });
    expect(await ann.next()).toEqual({ type: 'pong' });
    expect(ann.frames.filter((f) => f.type === 'message')).toHaveLength(1);
  });

  it('heals a gap from history when a message never came through pub/sub', async () => {
    const node = await startTestNode({ name: 'ws gap' });
    await node.createRoom('den', ['user:dee']);
    const dee = await connect(node.wsUrl, await node.token('user:dee'));
    dee.send({ type: 'subscribe', room: 'den' });
    await dee.next((f) => f.type === 'subscribed');
    await node.admin('POST', '/v1/rooms/den/messages?wait=1', { body: 'one' });
    expect(await dee.next()).toMatchObject({ seq: 1, body: 'one' });
    // Message 2 is committed (seq and history) but its pub/sub publish is lost.
    const keys = new Keys(node.prefix, node.config.partitions);
    const frame = `{"type":"message","room":"den","seq":2,"id":"lost","sender":{"kind":"service","id":"t"},"kind":"notification","body":"two","ts":1}`;
    await shared
      .multi()
      .set(keys.seq('den'), 2)
      .xadd(keys.history('den'), '2-0', 'm', frame)
      .exec();
    await node.admin('POST', '/v1/rooms/den/messages?wait=1', { body: 'three' });
    const [two, three] = await dee.take(2);
    expect([two?.seq, two?.body, three?.seq, three?.body]).toEqual([2, 'two', 3, 'three']);
  });

  it('replays a long history page by page while new messages arrive, without gaps or repeats', async () => {
    const node = await startTestNode({
      name: 'ws replay',
      overrides: { ws: { replayPageSize: 25 } },
    });
    await node.createRoom('hall', ['user:hal']);
    const post = (body: string) => node.admin('POST', '/v1/rooms/hall/messages', { body });
    await Promise.all(Array.from({ length: 300 }, (_, i) => post(`old ${i}`)));
    const keys = new Keys(node.prefix, node.config.partitions);
    while (Number(await shared.get(keys.seq('hall'))) < 300)
      await new Promise((r) => setTimeout(r, 20));

    const hal = await connect(node.wsUrl, await node.token('user:hal'));
    hal.send({ type: 'subscribe', room: 'hall', since: 0 });
    const live = Promise.all(Array.from({ length: 100 }, (_, i) => post(`new ${i}`)));
    const frames = await hal.take(401, (f) => f.type !== 'presence', 15_000);
    await live;
    expect(frames[0]).toMatchObject({ type: 'subscribed', room: 'hall' });
    expect(frames.slice(1).map((f) => f.seq)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
  });

  it('a publish retried with the same id is acked with the original seq and committed once', async () => {
    const node = await startTestNode({ name: 'ws idempotent' });
    await node.createRoom('shed', ['user:bo']);
    const bo = await connect(node.wsUrl, await node.token('user:bo'));
    bo.send({ type: 'publish', room: 'shed', body: 'once', id: 'retry-me' });
    expect(await bo.next((f) => f.type === 'ack')).toEqual({ type: 'ack', id: 'retry-me', seq: 1 });
    bo.send({ type: 'publish', room: 'shed', body: 'once', id: 'retry-me' });
    expect(await bo.next((f) => f.type === 'ack')).toEqual({ type: 'ack', id: 'retry-me', seq: 1 });
    const history = (await (await node.admin('GET', '/v1/rooms/shed/messages')).json()) as {
      messages: unknown[];
    };
    expect(history.messages).toHaveLength(1);
  });

  it('scopes publish ids to the room: the same id in two rooms commits two messages', async () => {
    const node = await startTestNode({ name: 'ws id per room' });
    await node.createRoom('east', ['user:cy']);
    await node.createRoom('west', ['user:cy']);
    const cy = await connect(node.wsUrl, await node.token('user:cy'));
    cy.send({ type: 'publish', room: 'east', body: 'to east', id: 'c1' });
    expect(await cy.next((f) => f.type === 'ack')).toEqual({ type: 'ack', id: 'c1', seq: 1 });
    cy.send({ type: 'publish', room: 'west', body: 'to west', id: 'c1' });
    expect(await cy.next((f) => f.type === 'ack')).toEqual({ type: 'ack', id: 'c1', seq: 1 });
    const west = (await (await node.admin('GET', '/v1/rooms/west/messages')).json()) as {
      messages: { body: string }[];
    };
    expect(west.messages.map((m) => m.body)).toEqual(['to west']);
  });

  it('tells a client publishing to a room it is not in, and keeps the connection', async () => {
    const node = await startTestNode({ name: 'ws forbidden publish' });
    await node.createRoom('vault', ['user:owner']);
    const eve = await connect(node.wsUrl, await node.token('user:eve'));
    eve.send({ type: 'publish', room: 'vault', body: 'let me in', id: 'e1' });
    expect(await eve.next()).toMatchObject({
      type: 'error',
      code: 'forbidden',
      id: 'e1',
      room: 'vault',
    });
    eve.send({ type: 'publish', room: 'nowhere', body: 'hello?', id: 'e2' });
    expect(await eve.next()).toMatchObject({ type: 'error', code: 'not_found', id: 'e2' });
    eve.send({ type: 'ping' });
    expect(await eve.next()).toEqual({ type: 'pong' });
  });

  it('stops promptly and releases its leases even when a peer never finishes the close handshake', async () => {
    const node = await startTestNode({ name: 'ws stuck peer' });
    const stuck = await connect(node.wsUrl, await node.token('user:stuck'));
    stopReading(stuck.ws);
    const started = Date.now();
    await node.node.stop();
    expect(Date.now() - started).toBeLessThan(node.config.shutdownTimeoutMs);
    // Every master on a cluster: KEYS sees only the server it is sent to.
    expect(await scanKeys(shared, `${node.prefix}*lease`)).toEqual([]);
    expect(await shared.zrange(`${node.prefix}nodes`, 0, -1)).toEqual([]);
    stuck.ws.terminate();
  });

  it('closes every connection with 1001 when the node stops', async () => {
    const node = await startTestNode({ name: 'ws shutdown' });
    const client = await connect(node.wsUrl, await node.token('user:late'));
    await node.stop();
    expect((await client.closed).code).toBe(1001);
  });

  it('tells a removed member it lost the room, sends it nothing more, and lets other members read on', async () => {
    const node = await startTestNode({ name: 'ws removed' });
    await node.createRoom('attic', ['user:ann', 'user:bob']);
    const ann = await subscribed(node, 'user:ann', 'attic');
    const bob = await subscribed(node, 'user:bob', 'attic');
    const admin = await subscribed(node, 'admin', 'attic');

    expect((await node.admin('DELETE', '/v1/rooms/attic/members/user:bob')).status).toBe(204);
    expect(await bob.next()).toEqual({ type: 'unsubscribed', room: 'attic', reason: 'removed' });
    await node.admin('POST', '/v1/rooms/attic/messages?wait=1', { body: 'after bob left' });
    expect(await ann.next()).toMatchObject({ type: 'message', body: 'after bob left' });
    expect(await admin.next()).toMatchObject({ type: 'message', body: 'after bob left' });
    expect(await framesAfterUnsubscribed(bob)).toEqual([]);

    // The revocation holds: bob cannot subscribe again, nor read the history.
    bob.send({ type: 'subscribe', room: 'attic' });
    expect(await bob.next()).toMatchObject({ type: 'error', code: 'forbidden', room: 'attic' });
    const history = await fetch(`${node.url}/v1/rooms/attic/messages`, {
      headers: { authorization: `Bearer ${await node.token('user:bob')}` },
    });
    expect(history.status).toBe(403);
  });

  it('revokes a removed member on every node of the mesh, whichever node served the removal', async () => {
    const first = await startTestNode({ name: 'ws removed mesh' });
    const second = await startTestNode({
      name: 'ws removed mesh 2',
      overrides: { keyPrefix: first.prefix },
    });
    await first.createRoom('cellar', ['user:ann', 'user:bob', 'user:cy']);
    const bobHere = await subscribed(first, 'user:bob', 'cellar');
    const bobThere = await subscribed(second, 'user:bob', 'cellar');
    const ann = await subscribed(first, 'user:ann', 'cellar');
    const cy = await subscribed(second, 'user:cy', 'cellar');

    expect((await first.admin('DELETE', '/v1/rooms/cellar/members/user:bob')).status).toBe(204);
    const gone = { type: 'unsubscribed', room: 'cellar', reason: 'removed' };
    expect(await bobHere.next()).toEqual(gone);
    expect(await bobThere.next()).toEqual(gone);
    await second.admin('POST', '/v1/rooms/cellar/messages?wait=1', { body: 'bob is out' });
    expect(await ann.next()).toMatchObject({ type: 'message', body: 'bob is out' });
    expect(await cy.next()).toMatchObject({ type: 'message', body: 'bob is out' });
    expect(await framesAfterUnsubscribed(bobHere)).toEqual([]);
    expect(await framesAfterUnsubscribed(bobThere)).toEqual([]);
  });

  it('tells every subscriber, admin included, when their room is deleted', async () => {
    const node = await startTestNode({ name: 'ws deleted' });
    await node.createRoom('loft', ['user:ann']);
    await node.createRoom('stair', ['user:ann']);
    const ann = await subscribed(node, 'user:ann', 'loft');
    ann.send({ type: 'subscribe', room: 'stair' });
    await ann.next((f) => f.type === 'subscribed');
    const admin = await subscribed(node, 'admin', 'loft');

    expect((await node.admin('DELETE', '/v1/rooms/loft')).status).toBe(204);
    const gone = { type: 'unsubscribed', room: 'loft', reason: 'deleted' };
    expect(await ann.next()).toEqual(gone);
    expect(await admin.next()).toEqual(gone);
    // ann's other room is untouched.
    await node.admin('POST', '/v1/rooms/stair/messages?wait=1', { body: 'still here' });
    expect(await ann.next()).toMatchObject({ type: 'message', room: 'stair', body: 'still here' });
  });

  it('takes the token as a bearer subprotocol, out of the URL, and never echoes it back', async () => {
    const node = await startTestNode({ name: 'ws-subprotocol' });
    const open = (token: string) =>
      new Promise<{ protocol: string; welcome: Frame } | { status: number }>((resolve, reject) => {
        const bearer = `bearer.${Buffer.from(token).toString('base64url')}`;
        const ws = new WebSocketClient(node.wsUrl, ['threshold', bearer]);
        ws.once('message', (data) => {
          resolve({ protocol: ws.protocol, welcome: JSON.parse(String(data)) as Frame });
          ws.close();
        });
        ws.once('unexpected-response', (_req, res) => resolve({ status: res.statusCode ?? 0 }));
        ws.once('error', reject);
      });
    expect(await open(ADMIN_TOKEN)).toEqual({
      protocol: 'threshold',
      welcome: expect.objectContaining({ type: 'welcome', member: null }),
    });
    expect(await open(await node.token('user:ann'))).toMatchObject({
      protocol: 'threshold',
      welcome: { type: 'welcome', member: 'user:ann' },
    });
    expect(await open('not-a-token')).toEqual({ status: 401 });
  });
});
