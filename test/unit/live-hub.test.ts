import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { LiveHub, type LiveSubscriber } from '../../src/delivery/live-hub.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { revocationPayload } from '../../src/rooms/revocation.ts';

/** A subscriber connection whose SUBSCRIBE confirmations the test releases by hand. */
class FakeSubscriber extends EventEmitter {
  readonly pending: (() => void)[] = [];
  status = 'ready';
  subscribe(_channel: string) {
    return new Promise<number>((resolve) => this.pending.push(() => resolve(1)));
  }
  async unsubscribe() {
    return 0;
  }
}

function recorder(): LiveSubscriber & {
  got: [string, number, string][];
  resyncs: string[];
  revoked: [string, string | undefined, string][];
} {
  const got: [string, number, string][] = [];
  const resyncs: string[] = [];
  const revoked: [string, string | undefined, string][] = [];
  return {
    got,
    resyncs,
    revoked,
    deliver: (room, seq, frame) => got.push([room, seq, frame.toString()]),
    resync: (room) => resyncs.push(room),
    revoke: (room, member, reason) => revoked.push([room, member, reason]),
    notice: (room, frame) => got.push([room, -1, frame.toString()]),
  };
}

const keys = new Keys('thr:', 8);
const frame = (seq: number) =>
  `{"type":"message","room":"r","seq":${seq},"id":"x","body":"b","ts":1}`;

describe('LiveHub', () => {
  it('makes a second subscriber wait for the Redis confirmation the first one is waiting for', async () => {
    const sub = new FakeSubscriber();
    const hub = new LiveHub(sub as unknown as Redis, keys, new Metrics(), createLogger('silent'));
    let firstDone = false;
    let secondDone = false;
    void hub.subscribe('r', recorder()).then(() => {
      firstDone = true;
    });
    void hub.subscribe('r', recorder()).then(() => {
      secondDone = true;
    });
    await new Promise((r) => setTimeout(r, 10));
    expect([firstDone, secondDone]).toEqual([false, false]);
    expect(sub.pending).toHaveLength(1); // one SUBSCRIBE for the room, shared
    sub.pending[0]?.();
    await new Promise((r) => setTimeout(r, 0));
    expect([firstDone, secondDone]).toEqual([true, true]);
  });

  it('hands every local subscriber the same frame with its seq, and only for its room', async () => {
    const sub = new FakeSubscriber();
    const hub = new LiveHub(sub as unknown as Redis, keys, new Metrics(), createLogger('silent'));
    const a = recorder();
    const b = recorder();
    const p = Promise.all([hub.subscribe('r', a), hub.subscribe('r', b)]);
    sub.pending[0]?.();
    await p;
    sub.emit('messageBuffer', Buffer.from(keys.live('r')), Buffer.from(frame(7)));
    sub.emit('messageBuffer', Buffer.from(keys.live('other')), Buffer.from(frame(8)));
    expect(a.got).toEqual([['r', 7, frame(7)]]);
    expect(b.got).toEqual(a.got);
  });

  it('asks every session to catch up from history after the first reconnect of an already connected subscriber', async () => {
    const sub = new FakeSubscriber();
    const hub = new LiveHub(sub as unknown as Redis, keys, new Metrics(), createLogger('silent'));
    const a = recorder();
    const p = hub.subscribe('r', a);
    sub.pending[0]?.();
    await p;
    expect(a.resyncs).toEqual([]);
    sub.emit('ready'); // a reconnect: whatever was published meanwhile is gone from pub/sub
    expect(a.resyncs).toEqual(['r']);
  });

  it('hands a revocation to every local subscriber of the room, and counts it as no delivery', async () => {
    const sub = new FakeSubscriber();
    const metrics = new Metrics();
    const hub = new LiveHub(sub as unknown as Redis, keys, metrics, createLogger('silent'));
    const a = recorder();
    const b = recorder();
    const p = Promise.all([hub.subscribe('r', a), hub.subscribe('r', b)]);
    sub.pending[0]?.();
    await p;
    const removed = revocationPayload({ room: 'r', reason: 'removed', member: 'user:bo' });
    sub.emit('messageBuffer', Buffer.from(keys.live('r')), Buffer.from(removed));
    const deleted = revocationPayload({ room: 'r', reason: 'deleted' });
    sub.emit('messageBuffer', Buffer.from(keys.live('r')), Buffer.from(deleted));
    expect(a.revoked).toEqual([
      ['r', 'user:bo', 'removed'],
      ['r', undefined, 'deleted'],
    ]);
    expect(b.revoked).toEqual(a.revoked);
    expect(a.got).toEqual([]);
    const text = await metrics.registry.metrics();
    expect(text).not.toMatch(/^threshold_deliveries_total\{[^}]*channel="ws"[^}]*\} [1-9]/m);
  });
});
