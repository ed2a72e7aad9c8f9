import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Keys, partitionOf, ROOM_ID } from '../../src/redis/keys.ts';

/** CRC-32 (IEEE, reflected, poly 0xEDB88320), written out so the test does not share src's hash. */
function crc32(s: string): number {
  let crc = 0xffffffff;
  for (const byte of Buffer.from(s, 'utf8')) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC16-CCITT (XModem), the hash Redis Cluster uses for key slots. */
function crc16(s: string): number {
  let crc = 0;
  for (const byte of Buffer.from(s, 'utf8')) {
    crc ^= byte << 8;
    for (let k = 0; k < 8; k++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The Redis Cluster slot of a key, hash tags included (https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags). */
function slotOf(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % 16384;
  }
  return crc16(key) % 16384;
}

describe('reference hashes used by these tests', () => {
  it('crc32 gives the published CRC-32 check value and agrees with node:zlib', () => {
    expect(crc32('123456789')).toBe(0xcbf43926);
    for (const s of ['garden', 'lobby', 'a', 'ünïcode']) expect(crc32(s)).toBe(zlibCrc32(s));
  });

  it('crc16 gives the Redis Cluster spec check value and slot', () => {
    // Both from the Redis Cluster specification.
    expect(crc16('123456789')).toBe(0x31c3);
    expect(slotOf('foo')).toBe(12182);
    expect(slotOf('{user1000}.following')).toBe(slotOf('{user1000}.followers'));
  });
});

describe('partitionOf', () => {
  it('maps a known room to a known partition: crc32("garden") mod 64 = 42', () => {
    expect(crc32('garden') % 64).toBe(42);
    expect(partitionOf('garden', 64)).toBe(42);
    expect(new Keys('thr:', 64).partitionOf('garden')).toBe(42);
    expect(partitionOf('lobby', 64)).toBe(55);
    expect(partitionOf('garden', 16)).toBe(10);
  });

  it('is CRC-32 of the room id mod P for many rooms and partition counts', () => {
    for (const P of [1, 2, 7, 64, 1000, 16384]) {
      for (let i = 0; i < 200; i++) {
        const room = `room-${i}`;
        expect(partitionOf(room, P)).toBe(crc32(room) % P);
      }
    }
  });

  it('is always an integer from 0 to P-1 and uses every partition of 64', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const p = partitionOf(`r${i}`, 64);
      expect(Number.isInteger(p)).toBe(true);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThan(64);
      seen.add(p);
    }
    expect(seen.size).toBe(64);
    expect(partitionOf('anything', 1)).toBe(0);
  });

  it('returns the same partition on every call', () => {
    const first = partitionOf('stable-room', 64);
    for (let i = 0; i < 10; i++) expect(partitionOf('stable-room', 64)).toBe(first);
  });
});

describe('Keys', () => {
  const keys = new Keys('thr:', 64);
  const room = 'garden';
  const n = keys.partitionOf(room);
  const tag = `{p${n}}`;
  const envelopeId = 'http:user:alice:k-1';

  const roomKeys = {
    room: keys.room(room),
    members: keys.members(room),
    seq: keys.seq(room),
    history: keys.history(room),
  };
  const partitionKeys = {
    funnel: keys.funnel(n),
    lease: keys.lease(n),
    leaseToken: keys.leaseToken(n),
    outbox: keys.outbox(n),
    seen: keys.seen(n, envelopeId),
    msg: keys.msg(n, envelopeId),
  };
  const all = { ...roomKeys, ...partitionKeys };

  it('builds the key names of DESIGN §3 for a room and its partition', () => {
    expect(all).toEqual({
      room: 'thr:{p42}:room:garden',
      members: 'thr:{p42}:room:garden:members',
      seq: 'thr:{p42}:room:garden:seq',
      history: 'thr:{p42}:room:garden:history',
      funnel: 'thr:{p42}:funnel',
      lease: 'thr:{p42}:lease',
      leaseToken: 'thr:{p42}:lease-token',
      outbox: 'thr:{p42}:outbox',
      seen: 'thr:{p42}:seen:http:user:alice:k-1',
      msg: 'thr:{p42}:msg:http:user:alice:k-1',
    });
  });

  it('gives every room and partition key of one room the same {p<n>} hash tag and the prefix', () => {
    for (const [name, key] of Object.entries(all)) {
      expect(key.startsWith(`thr:${tag}:`), `${name}: ${key}`).toBe(true);
      // The first {...} in the key is the partition tag, so Redis Cluster hashes only it.
      expect(key.slice(key.indexOf('{'), key.indexOf('}') + 1), name).toBe(tag);
    }
  });

  it('puts every key one commit touches in the same Redis Cluster slot', () => {
    const slots = new Set(Object.values(all).map(slotOf));
    expect(slots).toEqual(new Set([crc16(`p${n}`) % 16384]));
  });

  it('puts rooms of different partitions in different slots', () => {
    const other = 'lobby';
    expect(keys.partitionOf(other)).not.toBe(n);
    expect(slotOf(keys.room(other))).not.toBe(slotOf(keys.room(room)));
    expect(slotOf(keys.funnel(0))).not.toBe(slotOf(keys.funnel(1)));
  });

  it('keeps the tag and slot with a custom prefix', () => {
    const custom = new Keys('t:unit:', 64);
    expect(custom.history(room)).toBe(`t:unit:${tag}:room:garden:history`);
    expect(slotOf(custom.history(room))).toBe(slotOf(keys.funnel(n)));
    expect(custom.meta).toBe('t:unit:meta');
    expect(custom.rooms).toBe('t:unit:rooms');
  });

  it('gives a tag its own slot, {tag:<name>}, apart from the index of tags', () => {
    expect(keys.tagMembers('staff')).toBe('thr:{tag:staff}:members');
    expect(keys.tags).toBe('thr:tags');
    expect(slotOf(keys.tagMembers('staff'))).toBe(crc16('tag:staff') % 16384);
    expect(slotOf(keys.tagMembers('staff'))).not.toBe(slotOf(keys.tagMembers('interns')));
  });

  it('uses the partition count it was built with', () => {
    const small = new Keys('thr:', 16);
    expect(small.room(room)).toBe(`thr:{p${partitionOf(room, 16)}}:room:garden`);
    expect(small.room(room)).toBe('thr:{p10}:room:garden');
  });
});

describe('ROOM_ID', () => {
  it.each([['garden'], ['a'], ['0'], ['room_1-b'], ['a'.repeat(64)]])('accepts %j', (id) => {
    expect(ROOM_ID.test(id)).toBe(true);
  });

  it.each([
    ['65 characters', 'a'.repeat(65)],
    ['uppercase', 'Garden'],
    ['leading -', '-garden'],
    ['leading _', '_garden'],
    ['empty', ''],
    ['a space', 'my room'],
    ['a colon (would break key names)', 'a:b'],
    ['braces (would change the hash tag)', 'a{p1}'],
    ['a trailing newline', 'garden\n'],
  ])('rejects a room id with %s', (_why, id) => {
    expect(ROOM_ID.test(id)).toBe(false);
  });
});
