import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { parseClusterArgs } from '../../src/local-cluster.ts';

describe('parseClusterArgs', () => {
  it('takes --nodes and --redis-cluster, as `--flag N` or `--flag=N`, and passes every other flag on', () => {
    expect(parseClusterArgs([])).toEqual({ nodes: 3, redisCluster: undefined, rest: [] });
    expect(
      parseClusterArgs(['--nodes', '2', '--redis-cluster', '3', '--partitions', '16']),
    ).toEqual({ nodes: 2, redisCluster: 3, rest: ['--partitions', '16'] });
    expect(parseClusterArgs(['--redis-cluster=9', '--nodes=1'])).toEqual({
      nodes: 1,
      redisCluster: 9,
      rest: [],
    });
  });

  it.each([
    [['--redis-cluster', '2'], /--redis-cluster must be a whole number from 3 to 9/],
    [['--redis-cluster', '10'], /from 3 to 9/],
    [['--redis-cluster=3.5'], /from 3 to 9/],
    [['--redis-cluster'], /from 3 to 9/],
    [['--nodes', '0'], /--nodes must be a whole number from 1 to 16/],
  ])('refuses %j', (argv, message) => {
    expect(() => parseClusterArgs(argv)).toThrow(ConfigError);
    expect(() => parseClusterArgs(argv)).toThrow(message);
  });

  it('refuses --redis-cluster with --redis-url, in either order and form', () => {
    for (const argv of [
      ['--redis-cluster', '3', '--redis-url', 'redis://127.0.0.1:6379'],
      ['--redis-url=redis://127.0.0.1:6379', '--redis-cluster=3'],
    ]) {
      expect(() => parseClusterArgs(argv)).toThrow(/cannot be combined with --redis-url/);
    }
    expect(parseClusterArgs(['--redis-url', 'redis://127.0.0.1:6379']).rest).toEqual([
      '--redis-url',
      'redis://127.0.0.1:6379',
    ]);
  });
});
