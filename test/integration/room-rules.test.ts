import { describe, expect, it } from 'vitest';
import { Keys } from '../../src/redis/keys.ts';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode } from '../helpers/node.ts';
import { configFile } from '../helpers/readme-example.ts';
import { useRedis } from '../helpers/redis.ts';
import { connect } from '../helpers/ws-client.ts';

const redis = useRedis();

/** A handler plug-in that fails its first run, then replies: at least once, replied once. */
const FLAKY_HANDLER = `
let runs = 0;
export default function createHandler(ctx) {
  return async (message, api) => {
    runs++;
    if (runs === 1) throw new Error('first run fails');
    await api.reply(ctx.options.prefix + message.body + ' (run ' + runs + ')');
  };
}
`;

interface Page {
  messages: { seq: number; id: string; body: string; sender: { kind: string; id: string } }[];
}

describe('per-room validators and handlers', () => {
  it('a validator refuses with 400 rejected and nothing enters the funnel; a handler replies once, after the message', async () => {
    const config = await configFile(
      {
        validators: [
          { name: 'short', module: 'max-length', options: { max: 30 } },
          { name: 'clean', module: 'deny-words', options: { words: ['spam'] } },
        ],
        handlers: [{ name: 'bot', module: './bot.mjs', options: { prefix: 'bot saw: ' } }],
        outbox: { backoffBaseMs: 50, backoffMaxMs: 100 },
      },
      { 'bot.mjs': FLAKY_HANDLER },
    );
    const node = await startTestNode({ name: 'room rules', config });
    // A room may only name what the config has.
    const unknown = await node.admin('POST', '/v1/rooms', {
      id: 'nope',
      settings: { validators: ['nosuch'] },
    });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ detail: expect.stringMatching(/nosuch/) });

    const room = { id: 'lobby', settings: { validators: ['short', 'clean'], handlers: ['bot'] } };
    expect((await node.admin('POST', '/v1/rooms', room)).status).toBe(201);
    expect((await node.admin('PUT', '/v1/rooms/lobby/members/user:alice')).status).toBe(201);
    const keys = new Keys(node.prefix, node.config.partitions);
    const funnel = keys.funnel(keys.partitionOf('lobby'));
    const before = await redis.xlen(funnel);

    const long = await node.admin('POST', '/v1/rooms/lobby/messages', {
      body: 'this is far longer than thirty characters',
    });
    expect(long.status).toBe(400);
    expect(long.headers.get('content-type')).toMatch(/problem\+json/);
    expect(await long.json()).toMatchObject({
      code: 'rejected',
      detail: 'longer than 30 characters (41)',
    });
    const ws = await connect(node.wsUrl, await node.token('user:alice'));
    ws.send({ type: 'publish', room: 'lobby', body: 'buy SPAM now', id: 'c1' });
    expect(await ws.next((f) => f.type === 'error')).toMatchObject({
      code: 'rejected',
      message: expect.stringMatching(/word/),
    });
    expect(await redis.xlen(funnel)).toBe(before);

    const ok = await node.admin('POST', '/v1/rooms/lobby/messages?wait=1', { body: 'hello' });
    expect(ok.status).toBe(201);
    const history = () =>
      node
        .admin('GET', '/v1/rooms/lobby/messages')
        .then((r) => r.json() as Promise<Page>)
        .then((p) => p.messages);
    const messages = await eventually("the handler's reply", history, (m) => m.length >= 2, 10_000);
    // Give a second (wrong) reply the time to show up before looking.
    await new Promise((r) => setTimeout(r, 500));
    expect((await history()).map((m) => [m.seq, m.body, m.sender])).toEqual([
      [1, 'hello', { kind: 'service', id: 'admin' }],
      [2, 'bot saw: hello (run 2)', { kind: 'service', id: 'bot' }],
    ]);
    expect(messages[1]?.id).toBe(`bot:reply:${messages[0]?.id}`);
    await ws.close();
  });
});
