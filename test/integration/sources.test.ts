import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { startTestNode } from '../helpers/node.ts';
import { configFile } from '../helpers/readme-example.ts';

/**
 * A source that fails its first start, then publishes one message twice and tells in a
 * third what publish said of the second (and of a room that does not exist).
 */
const REPLAYER = `
let starts = 0;
export const mode = 'every-node';
export default function createSource(ctx) {
  return {
    async start() {
      if (++starts === 1) throw new Error('broker not up yet');
      const first = await ctx.publish({ room: ctx.options.room, id: 'a', body: 'once' });
      await new Promise((r) => setTimeout(r, 300));
      const again = await ctx.publish({ room: ctx.options.room, id: 'a', body: 'once' });
      const missing = await ctx.publish({ room: 'nowhere', id: 'x', body: '?' }).catch((e) => e.code);
      await ctx.publish({ room: ctx.options.room, id: 'b', body: [first.status, again.status, missing].join(' ') });
    },
    stop() {},
  };
}
`;

interface Page {
  messages: { id: string; body: string; sender: { kind: string; id: string } }[];
}

describe('message sources', () => {
  it('a replayed id commits once and publish says duplicate; a source whose start fails is started again', async () => {
    const config = await configFile(
      { sources: [{ name: 'replayer', module: './replayer.mjs', options: { room: 'feed' } }] },
      { 'replayer.mjs': REPLAYER },
    );
    const node = await startTestNode({
      name: 'sources',
      config,
      overrides: { logLevel: 'silent' },
    });
    await node.createRoom('feed');
    // Every-node sources start with the node (the room did not exist yet): the replayer's
    // first start failed, so this is its second, a second or so later.
    const messages = await eventually(
      'the replayer to report',
      async () =>
        ((await (await node.admin('GET', '/v1/rooms/feed/messages')).json()) as Page).messages,
      (m) => m.length >= 2,
      10_000,
    );
    expect(messages.map((m) => [m.id, m.body])).toEqual([
      ['replayer:a', 'once'],
      ['replayer:b', 'accepted duplicate not_found'],
    ]);
    expect(messages[0]?.sender).toEqual({ kind: 'service', id: 'replayer' });
  });
});
