import { describe, expect, it } from 'vitest';
import { TokenBuckets } from '../../src/delivery/token-bucket.ts';

describe('TokenBuckets', () => {
  it('allows the burst at once, then one token per 1/rate seconds, per key', () => {
    let now = 1_000_000;
    const buckets = new TokenBuckets(1, 2, { now: () => now });
    expect(buckets.take('+15550000001')).toBe(0);
    expect(buckets.take('+15550000001')).toBe(0);
    expect(buckets.take('+15550000001')).toBe(1000);
    // Another number has its own bucket.
    expect(buckets.take('+15550000002')).toBe(0);
    now += 400;
    expect(buckets.take('+15550000001')).toBe(600);
    now += 600;
    expect(buckets.take('+15550000001')).toBe(0);
    expect(buckets.take('+15550000001')).toBe(1000);
  });

  it('never saves up more than the burst, and forgets idle numbers', () => {
    let now = 0;
    const buckets = new TokenBuckets(10, 1, { now: () => now });
    expect(buckets.take('a')).toBe(0);
    now += 60_000;
    expect(buckets.take('a')).toBe(0);
    expect(buckets.take('a')).toBe(100);
    now += 1_000;
    buckets.prune();
    expect(buckets.take('a')).toBe(0);
  });
});
