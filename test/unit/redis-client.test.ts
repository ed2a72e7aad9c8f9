import { describe, expect, it } from 'vitest';
import { seedUrls } from '../../src/redis/client.ts';
import { nodeAccess } from '../../src/redis/connections.ts';

describe('THRESHOLD_REDIS_URL for a Redis Cluster', () => {
  it('takes several seeds separated by commas, blanks ignored', () => {
    expect(seedUrls('redis://a:6379, redis://b:6379,')).toEqual([
      'redis://a:6379',
      'redis://b:6379',
    ]);
    expect(seedUrls('redis://a:6379')).toEqual(['redis://a:6379']);
  });

  it("gives the first seed's user, password and TLS to every node the client finds", () => {
    expect(nodeAccess('rediss://app:p%40ss@cfg.example:6379')).toEqual({
      username: 'app',
      password: 'p@ss',
      tls: {},
    });
    expect(nodeAccess('redis://:secret@10.0.0.5:6379')).toEqual({ password: 'secret' });
    expect(nodeAccess('redis://10.0.0.5:6379')).toEqual({});
  });
});
