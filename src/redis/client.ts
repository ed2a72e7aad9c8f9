import { type ChainableCommander, Cluster, type ClusterOptions, type Redis } from 'ioredis';

/**
 * A connection to Threshold's Redis: one server (`Redis`) or a Redis Cluster (`Cluster`,
 * which routes each command to the master of its key's slot). Everything that touches Redis
 * takes this type, so both topologies run the same code.
 */
export type RedisClient = Redis | Cluster;

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/**
 * Commands sent together, with their replies in order as `pipeline().exec()` gives them.
 * On one server that is one pipeline. On a cluster a pipeline must stay within one node's
 * slots, so each command goes on its own and the client's auto-pipelining sends those bound
 * for the same master together; commands of one slot still run in the order given.
 */
export function batch(client: RedisClient): ChainableCommander {
  if (!isCluster(client)) return client.pipeline();
  const calls: (() => Promise<unknown>)[] = [];
  const commands = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const proxy: ChainableCommander = new Proxy({} as ChainableCommander, {
    get(_, name) {
      if (name === 'length') return calls.length;
      if (name === 'exec')
        return () =>
          Promise.all(
            calls.map((call) =>
              call().then(
                (reply): [null, unknown] => [null, reply],
                (err: Error): [Error, null] => [err, null],
              ),
            ),
          );
      if (typeof name !== 'string' || typeof commands[name] !== 'function') return undefined;
      return (...args: unknown[]) => {
        calls.push(() => commands[name]!.apply(client, args));
        return proxy;
      };
    },
  });
  return proxy;
}

/**
 * Seeds of `THRESHOLD_REDIS_URL`: one URL, or several separated by commas (nodes of one
 * Redis Cluster, any of which may be down at start).
 */
export function seedUrls(url: string): string[] {
  return url
    .split(',')
    .map((u) => u.trim())
    .filter(Boolean);
}

/** How Threshold's cluster clients behave (tests' clients too). */
export const CLUSTER_OPTIONS: ClusterOptions = {
  enableAutoPipelining: true,
  // Failovers: a command meeting a master that is down or a slot without one waits and is
  // sent again; the slots are looked up again now and then, and on every MOVED.
  retryDelayOnFailover: 200,
  retryDelayOnClusterDown: 200,
  retryDelayOnTryAgain: 200,
  slotsRefreshInterval: 2000,
  scaleReads: 'master',
  // Commands whose key ioredis cannot find (XGROUP's is after its subcommand) would be
  // auto-pipelined to the slot of their first argument; alone they follow MOVED instead.
  autoPipeliningIgnoredCommands: ['xgroup', 'xinfo'],
};
