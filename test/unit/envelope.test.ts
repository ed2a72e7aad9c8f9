import { describe, expect, it } from 'vitest';
import {
  ENVELOPE_VERSION,
  Envelope,
  memberIdOf,
  messageFrameParts,
  parseEnvelope,
} from '../../src/funnel/envelope.ts';

const base: Envelope = {
  v: 1,
  id: 'http:user:alice:k-1',
  room: 'garden',
  source: 'http',
  sender: { kind: 'user', id: 'alice' },
  body: 'hello',
  kind: 'chat',
  origin: { node: 'node-a' },
  receivedAt: 1_700_000_000_000,
};

const withField = (patch: Record<string, unknown>) => JSON.stringify({ ...base, ...patch });

/** What a client receives for `env` committed at `seq`: head + seq + tail, parsed. */
function frame(env: Envelope, seq: number): unknown {
  const [head, tail] = messageFrameParts(env);
  return JSON.parse(`${head}${seq}${tail}`);
}

describe('parseEnvelope', () => {
  it('parses a valid v1 envelope unchanged', () => {
    expect(ENVELOPE_VERSION).toBe(1);
    expect(parseEnvelope(JSON.stringify(base))).toEqual(base);
  });

  it('parses a phone envelope with media and a WebSocket origin', () => {
    const env = {
      ...base,
      id: 'twilio:SM123',
      source: 'twilio',
      sender: { kind: 'phone', id: '+15551234567' },
      media: ['https://example.com/a.jpg'],
      origin: { node: 'node-a', conn: 'c1' },
    };
    expect(parseEnvelope(JSON.stringify(env))).toEqual(env);
  });

  it('parses a service notification', () => {
    const env = { ...base, sender: { kind: 'service', id: 'admin' }, kind: 'notification' };
    expect(parseEnvelope(JSON.stringify(env)).sender).toEqual({ kind: 'service', id: 'admin' });
  });

  it.each([
    ['version 2', { v: 2 }],
    ['version "1" as a string', { v: '1' }],
    ['an uppercase room', { room: 'Garden' }],
    ['a room id of 65 characters', { room: 'a'.repeat(65) }],
    ['a phone sender not in E.164 (no +)', { sender: { kind: 'phone', id: '15551234567' } }],
    ['a phone sender not in E.164 (leading 0)', { sender: { kind: 'phone', id: '+05551234567' } }],
    ['a phone sender with spaces', { sender: { kind: 'phone', id: '+1 555 123 4567' } }],
    ['an unknown sender kind', { sender: { kind: 'robot', id: 'r2' } }],
    ['a user sender id with a space', { sender: { kind: 'user', id: 'al ice' } }],
    ['an unknown message kind', { kind: 'shout' }],
    ['an empty id', { id: '' }],
    ['a non-integer receivedAt', { receivedAt: 1.5 }],
    ['a media entry that is not a URL', { media: ['not a url'] }],
    ['no origin', { origin: undefined }],
  ])('rejects an envelope with %s', (_why, patch) => {
    expect(() => parseEnvelope(withField(patch))).toThrow();
  });

  it('rejects text that is not JSON with a SyntaxError', () => {
    expect(() => parseEnvelope('{"v":1,')).toThrow(SyntaxError);
  });

  it('names the offending field when a valid JSON value is not an envelope', () => {
    const result = Envelope.safeParse(JSON.parse(withField({ room: 'Bad Room' })));
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(['room']);
  });
});

describe('messageFrameParts', () => {
  it('makes head + seq + tail the WebSocket message frame of DESIGN §5', () => {
    expect(frame(base, 41)).toEqual({
      type: 'message',
      room: 'garden',
      seq: 41,
      id: 'http:user:alice:k-1',
      sender: { kind: 'user', id: 'alice' },
      kind: 'chat',
      body: 'hello',
      ts: 1_700_000_000_000,
    });
  });

  it('puts type, room and seq first, as the commit script splices the seq in', () => {
    const [head, tail] = messageFrameParts(base);
    expect(head).toBe('{"type":"message","room":"garden","seq":');
    expect(tail.startsWith(',"id":')).toBe(true);
    expect(Object.keys(frame(base, 1) as object)).toEqual([
      'type',
      'room',
      'seq',
      'id',
      'sender',
      'kind',
      'body',
      'ts',
    ]);
  });

  it('leaves out the origin, source and version that clients must not see', () => {
    const f = frame({ ...base, origin: { node: 'node-a', conn: 'secret-conn' } }, 1);
    expect(f).not.toHaveProperty('origin');
    expect(f).not.toHaveProperty('source');
    expect(f).not.toHaveProperty('v');
    expect(f).not.toHaveProperty('receivedAt');
  });

  it('includes media only when the envelope has some', () => {
    const media = ['https://example.com/a.jpg', 'https://example.com/b.png'];
    expect(frame({ ...base, media }, 2)).toMatchObject({ media });
    expect(frame(base, 2)).not.toHaveProperty('media');
    expect(frame({ ...base, media: [] }, 2)).not.toHaveProperty('media');
  });

  it.each([
    ['double quotes and backslashes', 'she said "hi" \\o/'],
    ['newlines, tabs and carriage returns', 'line 1\nline 2\r\n\tindented'],
    ['unicode and emoji', 'héllo wörld — 你好 👋🏽'],
    ['line and paragraph separators', 'a\u2028b\u2029c'],
    ['JSON-looking text', '{"type":"ack","seq":1}'],
    ['an empty body', ''],
  ])('round-trips a body with %s', (_why, body) => {
    const f = frame({ ...base, body }, 7) as { body: string; seq: number };
    expect(f.body).toBe(body);
    expect(f.seq).toBe(7);
  });

  it('escapes a room id safely in the head', () => {
    const [head] = messageFrameParts({ ...base, room: 'room_1-b' });
    expect(JSON.parse(`${head}3}`)).toEqual({ type: 'message', room: 'room_1-b', seq: 3 });
  });
});

describe('memberIdOf', () => {
  it('is user:<id> for app users', () => {
    expect(memberIdOf({ kind: 'user', id: 'alice' })).toBe('user:alice');
  });

  it('is phone:<E.164> for SMS senders', () => {
    expect(memberIdOf({ kind: 'phone', id: '+15551234567' })).toBe('phone:+15551234567');
  });

  it('is empty for services, which are not members of any room', () => {
    expect(memberIdOf({ kind: 'service', id: 'admin' })).toBe('');
  });
});
