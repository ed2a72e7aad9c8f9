import { describe, expect, it } from 'vitest';
import { DeadLetters } from '../../src/funnel/dead-letters.ts';
import { Keys, partitionOf } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { serviceEnvelope } from '../helpers/envelope.ts';
import { eventually } from '../helpers/eventually.ts';
import { as, startTestNode, type TestNode } from '../helpers/node.ts';
import { uniquePrefix, useRedis } from '../helpers/redis.ts';

interface Letter {
  id: string;
  kind: string;
  reason: string;
  detail: string;
  room?: string;
  body?: string;
}

const redis = defineScripts(useRedis());

/** Writes straight into the funnel, as ingress would but without its room check. */
async function feed(node: TestNode, room: string, data: string): Promise<void> {
  const p = partitionOf(room, node.config.partitions);
  await redis.xadd(`${node.prefix}{p${p}}:funnel`, '*', 'e', data);
}

async function letters(node: TestNode): Promise<Letter[]> {
  const res = await node.admin('GET', '/v1/dead-letters');
  expect(res.status).toBe(200);
  return ((await res.json()) as { letters: Letter[] }).letters;
}

describe('dead letters', () => {
  it('lists what could not commit, and requeues a message once its room exists again, once', async () => {
    const node = await startTestNode({ name: 'dead-letters' });
    await feed(node, 'gone', JSON.stringify(serviceEnvelope('gone', 'lost and found')));
    const [letter] = await eventually(
      'the dead letter',
      () => letters(node),
      (l) => l.length > 0,
    );
    expect(letter).toMatchObject({
      kind: 'envelope',
      reason: 'room_deleted',
      room: 'gone',
      body: 'lost and found',
    });
    const requeue = () => node.admin('POST', `/v1/dead-letters/${letter!.id}/requeue`);

    // The room is still missing: refused, and the letter stays.
    const early = await requeue();
    expect(early.status).toBe(409);
    expect(await early.json()).toMatchObject({ code: 'no_room' });
    expect((await letters(node)).map((l) => l.id)).toEqual([letter!.id]);

    await node.createRoom('gone');
    const done = await requeue();
    expect(done.status).toBe(200);
    expect(await done.json()).toMatchObject({ id: letter!.id, to: 'funnel' });
    const history = await eventually(
      'the requeued message committed',
      async () =>
        (await (await node.admin('GET', '/v1/rooms/gone/messages')).json()) as {
          messages: { body: string }[];
        },
      (h) => h.messages.length > 0,
    );
    expect(history.messages.map((m) => m.body)).toEqual(['lost and found']);
    expect(await letters(node)).toEqual([]);
    // Again: gone, so nothing is added twice.
    expect((await requeue()).status).toBe(404);
  });

  it('refuses to requeue an entry that holds no valid envelope', async () => {
    const node = await startTestNode({ name: 'dead-letters-invalid' });
    await feed(node, 'any', 'not json');
    const [letter] = await eventually(
      'the dead letter',
      () => letters(node),
      (l) => l.length > 0,
    );
    expect(letter).toMatchObject({ kind: 'envelope', reason: 'invalid_envelope' });
    const res = await node.admin('POST', `/v1/dead-letters/${letter!.id}/requeue`);
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: 'invalid_envelope' });
  });

  it('takes the admin token: 401 without, 403 for a member; 400 for a bad id, 404 for an unknown one', async () => {
    const node = await startTestNode({ name: 'dead-letters-auth' });
    expect((await fetch(`${node.url}/v1/dead-letters`)).status).toBe(401);
    const member = as(node, await node.token('user:alice'));
    expect((await member('GET', '/v1/dead-letters')).status).toBe(403);
    expect((await member('POST', '/v1/dead-letters/1-0/requeue')).status).toBe(403);
    expect((await node.admin('GET', '/v1/dead-letters?limit=0')).status).toBe(400);
    expect((await node.admin('GET', '/v1/dead-letters?colour=red')).status).toBe(400);
    expect((await node.admin('POST', '/v1/dead-letters/nope/requeue')).status).toBe(400);
    const unknown = await node.admin('POST', '/v1/dead-letters/1-0/requeue');
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });

  it('pages newest first', async () => {
    const keys = new Keys(uniquePrefix('dead-pages'), 4);
    const store = new DeadLetters(redis, keys);
    for (const n of [1, 2, 3]) await redis.xadd(keys.dead, `${n}-0`, 'reason', `r${n}`, 'e', '');
    const first = await store.list(2);
    expect(first.letters.map((l) => l.reason)).toEqual(['r3', 'r2']);
    const rest = await store.list(2, first.next);
    expect(rest).toEqual({ letters: [expect.objectContaining({ reason: 'r1' })] });
    await redis.del(keys.dead);
  });

  it('puts a dead outbox job back in its retry set with fresh attempts, its recipient queued again', async () => {
    const keys = new Keys(uniquePrefix('dead-jobs'), 4);
    const store = new DeadLetters(redis, keys);
    const msg = keys.msg(2, 'http:x:1');
    await redis.hset(msg, 'webhook:webhook:ops', 'failed', 'webhook:failed', '1');
    const job = {
      ch: 'webhook',
      kind: 'relay',
      d: 'd',
      to: 'webhook:ops',
      room: 'r',
      msg: 'http:x:1',
      attempt: '6',
      m: '{"body":"hi"}',
    };
    // prettier-ignore
    const id = await redis.xadd(keys.dead, '*', 'reason', 'webhook_error', 'detail', '500', 'code', '500',
      'channel', 'webhook', 'partition', '2', 'entry', '1-0', 'job', JSON.stringify(job));
    expect((await store.list(10)).letters[0]).toMatchObject({
      kind: 'job',
      channel: 'webhook',
      to: 'webhook:ops',
      body: 'hi',
      code: '500',
    });
    expect(await store.requeue(id!)).toEqual({ id, to: 'outbox', partition: 2 });
    const [queued] = await redis.zrange(keys.outboxRetry(2), 0, -1);
    const fields = JSON.parse(queued!) as string[];
    expect(fields.slice(fields.indexOf('attempt'), fields.indexOf('attempt') + 2)).toEqual([
      'attempt',
      '0',
    ]);
    expect(
      await redis.hmget(msg, 'webhook:webhook:ops', 'webhook:failed', 'webhook:queued'),
    ).toEqual(['queued', '0', '1']);
    await expect(store.requeue(id!)).rejects.toMatchObject({ status: 404 });
    for (const key of [msg, keys.outboxRetry(2), keys.dead]) await redis.del(key);
  });
});
