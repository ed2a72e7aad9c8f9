import { describe, expect, it } from 'vitest';
import { ConnectionLimitError } from '../../src/errors.ts';
import { ConnectionLimits } from '../../src/http/connection-limits.ts';

describe('ConnectionLimits', () => {
  it('refuses past the cap per address and per member, and gives a slot back once', () => {
    const limits = new ConnectionLimits({ perIp: 3, perMember: 2 });
    const a1 = limits.acquire('10.0.0.1', 'user:ann');
    limits.acquire('10.0.0.1', 'user:ann');
    expect(() => limits.acquire('10.0.0.2', 'user:ann')).toThrow(ConnectionLimitError);
    limits.acquire('10.0.0.1', 'user:bob');
    const overIp = (() => {
      try {
        limits.acquire('10.0.0.1', undefined);
      } catch (err) {
        return err as ConnectionLimitError;
      }
    })();
    expect(overIp).toMatchObject({ limit: 'ip_limit', status: 429, code: 'too_many_connections' });
    a1();
    a1();
    // One slot back, not two: ann and the address each have exactly one free.
    limits.acquire('10.0.0.1', 'user:ann');
    expect(() => limits.acquire('10.0.0.3', 'user:ann')).toThrow(/maxConnectionsPerMember/);
    expect(() => limits.acquire('10.0.0.1', 'user:cat')).toThrow(/maxConnectionsPerIp/);
  });

  it('has no cap where it is 0', () => {
    const limits = new ConnectionLimits({ perIp: 0, perMember: 0 });
    for (let i = 0; i < 1000; i++) limits.acquire('10.0.0.1', 'user:ann');
  });
});
