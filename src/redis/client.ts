import {
  type ChainableCommander,
  Cluster,
  type ClusterOptions,
  Command,
  type Redis,
} from 'ioredis';

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
 * The server a key's commands go to: on a cluster the `host:port` of its slot's master as
 * the client knows it now (the key itself before the slots are known), '' on one server.
 */
export function serverOf(client: RedisClient, key: string): string {
  if (!isCluster(client)) return '';
  const slot = new Command('exists', [key]).getSlot();
  return (slot === null ? undefined : client.slots[slot]?.[0]) ?? key;
}

/**
 * Calls `onDrop` whenever a connection of the client closes (on a cluster: any master's,
 * those found later included). A WAIT vouches only for writes made on its own connection, so
 * a drop between the writes and the WAIT's answer voids it: ioredis sends unanswered
 * commands again on the new connection (the promoted replica, after a failover), where
 * WAIT would count replicas that never saw those writes.
 */
export function onConnectionDrop(client: RedisClient, onDrop: () => void): void {
  if (isCluster(client)) {
    for (const node of client.nodes()) node.on('close', onDrop);
    client.on('+node', (node: Redis) => node.on('close', onDrop));
  } else client.on('close', onDrop);
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
  // SSUBSCRIBE and SUNSUBSCRIBE must go alone too: the sharded subscriber group records the
  // channels to subscribe again after a failover only for the first command of an
  // auto-pipelined batch (ioredis 5.11, cluster/index.js), so the others' wake-ups
  // (stream-wakes.ts) stayed on the dead master for good. commitBatch (lua/commit-batch-n.lua)
  // takes its number of keys first, which auto-pipelining would take for its key.
  autoPipeliningIgnoredCommands: ['xgroup', 'xinfo', 'ssubscribe', 'sunsubscribe', 'commitBatch'],
};
