import { describe, expect, it } from 'vitest';
import { MemberNotices } from '../../src/delivery/member-notices.ts';
import { Keys } from '../../src/redis/keys.ts';

describe('MemberNotices', () => {
  it('publishes {member, frame} on thr:member:notices and hands well-formed ones to deliver', async () => {
    const handlers = new Map<string, (payload: string) => void>();
    const published: [string, string][] = [];
    const notices = new MemberNotices(
      {
        publish: async (channel: string, payload: string) => {
          published.push([channel, payload]);
          handlers.get(channel)?.(payload);
          return 1;
        },
      } as never,
      new Keys('thr:', 8),
    );
    const delivered: [string, string][] = [];
    await notices.listen(
      async (channel, handler) => handlers.set(channel, handler),
      (member, frame) => delivered.push([member, frame]),
    );
    await notices.notify('user:bob', '{"type":"invite"}');
    expect(published).toEqual([
      ['thr:member:notices', '{"member":"user:bob","frame":"{\\"type\\":\\"invite\\"}"}'],
    ]);
    expect(delivered).toEqual([['user:bob', '{"type":"invite"}']]);

    // Anything else on the channel is dropped, not thrown.
    const handler = handlers.get('thr:member:notices');
    for (const junk of ['not json', '{}', '{"member":1,"frame":"x"}', '{"member":"m","frame":{}}'])
      handler?.(junk);
    expect(delivered).toHaveLength(1);
  });
});
