import { describe, expect, it } from 'vitest';
import { isRedisUnavailable } from '../../src/errors.ts';

class ReplyError extends Error {}

describe('isRedisUnavailable', () => {
  it.each([
    ["OOM command not allowed when used memory > 'maxmemory'."],
    ['LOADING Redis is loading the dataset in memory'],
    ['BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.'],
    ["READONLY You can't write against a read only replica."],
    [
      'MISCONF Redis is configured to save RDB snapshots, but it is currently not able to persist on disk.',
    ],
    ['Connection is closed.'],
    ['connect ECONNREFUSED 127.0.0.1:6390'],
    ['Command timed out'],
    // A Redis Cluster failover, seen through an auto-pipelined batch (ioredis #2075).
    ['MOVED 3821 127.0.0.1:34877'],
    ['ASK 3821 127.0.0.1:34877'],
    ['Too many Cluster redirections. Last error: ReplyError: MOVED 3821 127.0.0.1:34877'],
  ])('treats "%s" as "retry later"', (message) => {
    expect(isRedisUnavailable(new ReplyError(message))).toBe(true);
  });

  it('treats a script error of the message itself as final', () => {
    const err = new ReplyError(
      "ERR user_script:12: Script attempted to access nonexistent global variable 'x' script: 3f1c…",
    );
    expect(isRedisUnavailable(err)).toBe(false);
    expect(
      isRedisUnavailable(
        new ReplyError('WRONGTYPE Operation against a key holding the wrong kind of value'),
      ),
    ).toBe(false);
  });

  it('treats ioredis giving up on a command as unavailable', () => {
    const err = new Error('Reached the max retries per request limit (which is 2).');
    err.name = 'MaxRetriesPerRequestError';
    expect(isRedisUnavailable(err)).toBe(true);
    expect(isRedisUnavailable('OOM as a string')).toBe(false);
  });
});
