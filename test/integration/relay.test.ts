import { sign } from 'hono/jwt';
import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { connect, type Frame, UpgradeRefusedError } from '../helpers/ws-client.ts';

const ROOM = 'lobby';

interface PublishOptions {
  /** A client JWT; the admin token when absent. */
  token?: string;
  idempotencyKey?: string;
  wait?: boolean;
}

function publish(node: TestNode, room: string, body: unknown, options: PublishOptions = {}) {
  const headers: Record<string, string> = {
    authorization: `Bearer ${options.token ?? node.config.adminToken}`,
    'content-type': 'application/json',
  };
  if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
  return fetch(`${node.url}/v1/rooms/${room}/messages${options.wait ? '?wait=1' : ''}`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

/** A member's WebSocket, subscribed to the room; resolves after the `subscribed` frame. */
async function subscriber(node: TestNode, member: string, room: string, since?: number) {
  const client = await connect(node.wsUrl, await node.token(member));
  client.send(
    since === undefined ? { type: 'subscribe', room } : { type: 'subscribe', room, since },
  );
  const subscribed = await client.next((f) => f.type === 'subscribed' || f.type === 'error');
  expect(subscribed).toMatchObject({ type: 'subscribed', room });
  return { client, subscribed };
}

const isMessage = (f: Frame) => f.type === 'message';
const seqs = (frames: Frame[]) => frames.map((f) => f.seq as number);
const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function roomSeq(node: TestNode, room: string): Promise<number> {
  const res = await node.admin('GET', `/v1/rooms/${room}`);
  return (await json(res)).seq as number;
}

describe('relay node end to end', () => {
  it('admin routes: 401 without the admin token, 400 problem+json for a bad room id', async () => {
    const node = await startTestNode({ name: 'relay-admin' });

    const anonymous = await fetch(`${node.url}/v1/rooms`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: ROOM }),
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('content-type')).toBe('application/problem+json');
    expect(await json(anonymous)).toMatchObject({ status: 401, code: 'unauthorized' });

    const wrongToken = await fetch(`${node.url}/v1/rooms`, {
      headers: { authorization: 'Bearer not-the-admin-token' },
    });
    expect(wrongToken.status).toBe(401);

    // A valid client JWT is not the admin token.
    const member = await fetch(`${node.url}/v1/rooms`, {
      headers: { authorization: `Bearer ${await node.token('user:alice')}` },
    });
    expect(member.status).toBe(403);

    for (const res of [
      await node.admin('GET', '/v1/rooms/Not_A_Room'),
      await node.admin('POST', '/v1/rooms', { id: 'Bad Room!' }),
    ]) {
      expect(res.status).toBe(400);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      const problem = await json(res);
      expect(problem).toMatchObject({
        status: 400,
        code: 'invalid_request',
        title: 'Bad Request',
      });
      expect(problem.detail).toMatch(/room|id/);
      expect(problem.type).toEqual(expect.any(String));
    }

    const created = await node.admin('POST', '/v1/rooms', { id: ROOM });
    expect(created.status).toBe(201);
    expect((await node.admin('GET', '/v1/rooms')).status).toBe(200);
  });

  it('WebSocket: a forged JWT is refused at upgrade (401); a member subscribes at seq 0', async () => {
    const node = await startTestNode({ name: 'relay-ws-auth' });
    await node.createRoom(ROOM, ['user:alice']);

    const forged = await sign({ sub: 'user:alice' }, 'not-the-secret', 'HS256');
    const refused = await connect(node.wsUrl, forged).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(UpgradeRefusedError);
    expect((refused as UpgradeRefusedError).status).toBe(401);

    const anonymous = await connect(node.wsUrl).catch((err: unknown) => err);
    expect((anonymous as UpgradeRefusedError).status).toBe(401);

    const client = await connect(node.wsUrl, await node.token('user:alice'));
    client.send({ type: 'subscribe', room: ROOM });
    expect(await client.next()).toEqual({ type: 'subscribed', room: ROOM, seq: 0 });

    // A member of nothing is refused per room, not disconnected.
    const stranger = await connect(node.wsUrl, await node.token('user:mallory'));
    stranger.send({ type: 'subscribe', room: ROOM });
    expect(await stranger.next()).toMatchObject({ type: 'error', code: 'forbidden', room: ROOM });
    expect(stranger.isOpen).toBe(true);
  });

  it('HTTP publish with wait=1 commits seq 1 and reaches the subscriber; a WS publish is acked', async () => {
    const node = await startTestNode({ name: 'relay-publish' });
    await node.createRoom(ROOM, ['user:alice', 'user:bob']);
    const { client } = await subscriber(node, 'user:alice', ROOM);

    const res = await publish(
      node,
      ROOM,
      { body: 'hello from bob' },
      { token: await node.token('user:bob'), wait: true },
    );
    expect(res.status).toBe(201);
    const published = await json(res);
    expect(published).toMatchObject({ seq: 1, status: 'committed', id: expect.any(String) });

    expect(await client.next(isMessage)).toEqual({
      type: 'message',
      room: ROOM,
      seq: 1,
      id: published.id,
      sender: { kind: 'user', id: 'bob' },
      kind: 'chat',
      body: 'hello from bob',
      ts: expect.any(Number),
    });

    client.send({ type: 'publish', room: ROOM, body: 'hi from alice', id: 'c1' });
    expect(await client.next((f) => f.type === 'ack' || f.type === 'error')).toEqual({
      type: 'ack',
      id: 'c1',
      seq: 2,
    });
    expect(await client.next(isMessage)).toMatchObject({
      seq: 2,
      body: 'hi from alice',
      sender: { kind: 'user', id: 'alice' },
    });
  });

  it('idempotent retries, refusals (403, 404, 400, 413) and a garbage WS frame', async () => {
    const node = await startTestNode({ name: 'relay-refusals' });
    await node.createRoom(ROOM, ['user:alice']);
    const alice = await node.token('user:alice');

    const first = await publish(
      node,
      ROOM,
      { body: 'once' },
      { token: alice, idempotencyKey: 'k-1', wait: true },
    );
    const again = await publish(
      node,
      ROOM,
      { body: 'once' },
      { token: alice, idempotencyKey: 'k-1', wait: true },
    );
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    const [a, b] = [await json(first), await json(again)];
    expect(a.seq).toBe(1);
    expect(b).toMatchObject({ id: a.id, seq: a.seq });
    const history = await json(await node.admin('GET', `/v1/rooms/${ROOM}/messages`));
    expect(history.messages).toHaveLength(1);
    expect(await roomSeq(node, ROOM)).toBe(1);

    const stranger = await publish(
      node,
      ROOM,
      { body: 'let me in' },
      { token: await node.token('user:mallory') },
    );
    expect(stranger.status).toBe(403);
    expect(await json(stranger)).toMatchObject({ code: 'forbidden' });

    const unknown = await publish(node, 'no-such-room', { body: 'anyone?' });
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toBe('application/problem+json');

    const malformed = await publish(node, ROOM, '{"body": "unterminated');
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toBe('application/problem+json');
    expect(await json(malformed)).toMatchObject({ code: 'invalid_request' });

    const huge = JSON.stringify({ body: 'x'.repeat(2 * 1024 * 1024) });
    const tooLarge = await publish(node, ROOM, huge).catch((err: unknown) => err);
    // The node may answer before reading the body and close; all that matters is the 413.
    expect(tooLarge).not.toBeInstanceOf(Error);
    expect((tooLarge as Response).status).toBe(413);
    expect(await roomSeq(node, ROOM)).toBe(1);

    const client = await connect(node.wsUrl, alice);
    client.send('not json');
    expect(await client.next()).toMatchObject({ type: 'error', code: 'bad_frame' });
    client.send({ type: 'ping' });
    expect(await client.next()).toEqual({ type: 'pong' });
    expect(client.isOpen).toBe(true);
  });

  it('300 concurrent publishes arrive complete and in order; since=150 replays 151..300 then live', async () => {
    const node = await startTestNode({ name: 'relay-burst' });
    await node.createRoom(ROOM, ['user:alice', 'user:bob']);
    const { client: live } = await subscriber(node, 'user:alice', ROOM);

    const responses = await Promise.all(
      range(1, 300).map((i) => publish(node, ROOM, { body: `burst ${i}` })),
    );
    expect(responses.map((r) => r.status)).toEqual(responses.map(() => 202));

    const frames = await live.take(300, isMessage, 15_000);
    expect(seqs(frames)).toEqual(range(1, 300));
    const bodies = new Set(frames.map((f) => f.body));
    expect(bodies.size).toBe(300);

    const { client: late, subscribed } = await subscriber(node, 'user:bob', ROOM, 150);
    expect(subscribed.seq).toBe(300);
    const replay = await late.take(150, isMessage, 10_000);
    expect(seqs(replay)).toEqual(range(151, 300));
    expect(replay.map((f) => f.body)).toEqual(frames.slice(150).map((f) => f.body));

    const after = await publish(node, ROOM, { body: 'after the replay' }, { wait: true });
    expect(after.status).toBe(201);
    expect(await late.next(isMessage)).toMatchObject({ seq: 301, body: 'after the replay' });
    expect(await live.next(isMessage)).toMatchObject({ seq: 301 });
    expect(late.frames.filter(isMessage)).toHaveLength(151);
  });

  it('/metrics is Prometheus text with the relay counters and process metrics', async () => {
    const node = await startTestNode({ name: 'relay-metrics' });
    await node.createRoom(ROOM);
    expect((await publish(node, ROOM, { body: 'counted' }, { wait: true })).status).toBe(201);

    const res = await fetch(`${node.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^threshold_messages_relayed_total\{source="http"\} 1$/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+$/m);
    expect(text).toContain('# TYPE threshold_messages_relayed_total counter');

    // Case-insensitive like Prometheus's own parser: prom-client writes NaN as `Nan`.
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? (-?[0-9.]+([eE][+-]?[0-9]+)?|NaN|[+-]Inf)$/i;
    const comment = /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/;
    const bad = text
      .split('\n')
      .filter((line) => line !== '' && !comment.test(line) && !sample.test(line));
    expect(bad).toEqual([]);
  });

  it('closes a slow consumer with 4008; it recovers everything by subscribing with since', async () => {
    const node = await startTestNode({
      name: 'relay-slow',
      // Keep frames (~4 KB here) well under the limit: the session closes a client at once for a
      // frame larger than the limit, and only replays when under half of it is buffered.
      overrides: { ws: { maxBufferedBytes: 16_384 } },
    });
    await node.createRoom(ROOM, ['user:alice']);
    const { client: slow } = await subscriber(node, 'user:alice', ROOM);
    const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();

    // The kernel buffers a few MB of a paused loopback connection (tcp_wmem max is 4 MB on
    // common Linux defaults) before the node sees any backpressure: 2000 messages of ~4 KB
    // overflow that, and if a host buffers more we keep publishing until the node gives up.
    const body = 'y'.repeat(3_800);
    const slowClosed = async () =>
      /threshold_websocket_closed_total\{reason="slow_consumer"\} 1/.test(
        await (await fetch(`${node.url}/metrics`)).text(),
      );
    let total = 0;
    while (total < 2_000 || (total < 10_000 && !(await slowClosed()))) {
      const batch = await Promise.all(
        range(total + 1, total + 100).map((n) => publish(node, ROOM, { body: `${n} ${body}` })),
      );
      expect(batch.every((r) => r.status === 202)).toBe(true);
      total += 100;
    }
    await eventually(
      'every message to commit',
      () => roomSeq(node, ROOM),
      (s) => s === total,
    );
    await eventually('the slow-consumer close', slowClosed, (closed) => closed);

    socket.resume();
    expect(await slow.closed).toMatchObject({ code: 4008 });
    const seen = seqs(slow.frames.filter(isMessage));
    const last = seen.at(-1) ?? 0;
    expect(seen).toEqual(range(1, last));
    expect(last).toBeLessThan(total);

    const { client: again } = await subscriber(node, 'user:alice', ROOM, last);
    const recovered = await again.take(total - last, isMessage, 15_000);
    expect(seqs(recovered)).toEqual(range(last + 1, total));
    expect(recovered.at(-1)?.body).toBe(`${total} ${body}`);
    expect(again.isOpen).toBe(true);
  }, 40_000);

  it('pages history with since and limit, and reports a message as committed', async () => {
    const node = await startTestNode({ name: 'relay-history' });
    await node.createRoom(ROOM, ['user:alice']);
    const ids: string[] = [];
    for (const i of range(1, 5)) {
      const res = await publish(node, ROOM, { body: `m${i}` }, { wait: true });
      expect(res.status).toBe(201);
      ids.push((await json(res)).id as string);
    }

    const alice = await node.token('user:alice');
    const page = async (query: string) => {
      const res = await fetch(`${node.url}/v1/rooms/${ROOM}/messages?${query}`, {
        headers: { authorization: `Bearer ${alice}` },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as {
        room: string;
        messages: Frame[];
        last: number;
        truncated?: boolean;
      };
      return {
        seqs: seqs(body.messages),
        last: body.last,
        messages: body.messages,
        truncated: body.truncated,
      };
    };
    expect(await page('since=0&limit=2')).toMatchObject({ seqs: [1, 2], last: 2 });
    expect(await page('since=2&limit=2')).toMatchObject({ seqs: [3, 4], last: 4 });
    expect(await page('since=4&limit=2')).toMatchObject({ seqs: [5], last: 5 });
    expect(await page('since=5&limit=2')).toMatchObject({ seqs: [], last: 5 });
    const all = await page('since=0');
    expect(all.messages.map((m) => m.body)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5']);
    expect(all.truncated).toBeUndefined();
    expect(all.messages.map((m) => m.id)).toEqual(ids);

    expect((await node.admin('GET', `/v1/rooms/${ROOM}/messages?limit=0`)).status).toBe(400);
    const outsider = await fetch(`${node.url}/v1/rooms/${ROOM}/messages`, {
      headers: { authorization: `Bearer ${await node.token('user:mallory')}` },
    });
    expect(outsider.status).toBe(403);

    const id = ids[2] as string;
    const status = await node.admin('GET', `/v1/messages/${encodeURIComponent(id)}?room=${ROOM}`);
    expect(status.status).toBe(200);
    expect(await json(status)).toMatchObject({
      id,
      room: ROOM,
      seq: 3,
      status: 'committed',
      committedAt: expect.any(Number),
    });
    const unknown = await node.admin('GET', `/v1/messages/http:nope?room=${ROOM}`);
    expect(unknown.status).toBe(404);
    const noRoom = await node.admin('GET', `/v1/messages/${encodeURIComponent(id)}`);
    expect(noRoom.status).toBe(400);
  });

  it('says when messages after since were trimmed from history, and which is the oldest kept', async () => {
    const node = await startTestNode({ name: 'relay-truncated' });
    const room = 'short';
    const created = await node.admin('POST', '/v1/rooms', {
      id: room,
      settings: { historyLength: 5 },
    });
    expect(created.status).toBe(201);
    // Redis trims `MAXLEN ~` by whole stream nodes of 100 entries: 150 messages drop the first 100.
    await Promise.all(range(1, 150).map((i) => publish(node, room, { body: `m${i}` })));
    await eventually(
      '150 commits',
      () => roomSeq(node, room),
      (seq) => seq === 150,
      10_000,
    );

    const page = async (query: string) => {
      const res = await node.admin('GET', `/v1/rooms/${room}/messages?${query}`);
      expect(res.status).toBe(200);
      return json(res);
    };
    const fromStart = await page('since=0&limit=3');
    const first = fromStart.first as number;
    expect(first).toBeGreaterThan(1);
    expect(fromStart).toMatchObject({ truncated: true, first, last: first + 2 });
    expect(seqs(fromStart.messages as Frame[])).toEqual(range(first, first + 2));

    // Asking from just before the oldest kept message loses nothing: no `truncated`.
    const fromKept = await page(`since=${first - 1}&limit=3`);
    expect(seqs(fromKept.messages as Frame[])).toEqual(range(first, first + 2));
    expect(fromKept).not.toHaveProperty('truncated');
    expect(fromKept).not.toHaveProperty('first');

    // A WebSocket subscribing from the start is told the same, then replays what is kept.
    const client = await connect(node.wsUrl, node.config.adminToken);
    client.send({ type: 'subscribe', room, since: 0 });
    expect(await client.take(3)).toMatchObject([
      { type: 'subscribed', room, seq: 150 },
      {
        type: 'error',
        code: 'history_truncated',
        room,
        message: expect.stringContaining(`1..${first - 1}`),
      },
      { type: 'message', room, seq: first },
    ]);
  });
});
