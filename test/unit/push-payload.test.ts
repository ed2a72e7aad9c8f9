import { describe, expect, it } from 'vitest';
import type { ChannelMessage } from '../../src/delivery/channel.ts';
import { MAX_PUSH_PAYLOAD_BYTES, pushPayload } from '../../src/delivery/channels/push.ts';

const message = (body: string, kind: ChannelMessage['kind'] = 'chat'): ChannelMessage => ({
  id: 'm1',
  seq: 3,
  body,
  sender: { kind: 'user', id: 'ann' },
  kind,
  ts: 1000,
});

describe('pushPayload', () => {
  it('is the notification as is when it fits; data is parsed JSON, or kept as a string', () => {
    expect(JSON.parse(pushPayload('r', message('hi'), '{"a":1}'))).toEqual({
      type: 'message',
      id: 'm1',
      room: 'r',
      body: 'hi',
      sender: { kind: 'user', id: 'ann' },
      data: { a: 1 },
      ts: 1000,
    });
    expect(JSON.parse(pushPayload('r', message('hi', 'notification'), 'plain'))).toMatchObject({
      type: 'notification',
      data: 'plain',
    });
  });

  it('cuts a long body on a code point, with an ellipsis, to fit one push record', () => {
    const payload = pushPayload('r', message('😀'.repeat(3000)));
    expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(MAX_PUSH_PAYLOAD_BYTES);
    const { body } = JSON.parse(payload) as { body: string };
    expect(body).toMatch(/^(😀)+…$/u);
    expect(body.length).toBeGreaterThan(1000);
  });

  it('leaves out data too large to fit with any body', () => {
    const data = JSON.stringify({ blob: 'x'.repeat(5000) });
    const parsed = JSON.parse(pushPayload('r', message('short'), data)) as Record<string, unknown>;
    expect(parsed.data).toBeUndefined();
    expect(parsed.body).toBe('short');
  });
});
