import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * The Redis Cluster tier (`npm run test:redis-cluster`): the integration suites (commit,
 * relay, WebSocket, SMS, channels, sources…) and the mesh suites again, on a real three-master Redis Cluster instead of one standalone
 * server. One suite per topology, as socket.io's Redis Streams adapter does.
 */

// Read by test/global-setup.ts, which runs in this process: it starts the cluster (or takes
// REDIS_URL as a node of a running one) and tells the tests (inject('redisTopology')).
process.env.THRESHOLD_TEST_REDIS = 'cluster';

export default defineConfig({
  test: {
    ...base.test,
    include: [
      // commit, relay, WebSocket, SMS, channels, sources: every integration suite that runs
      // on the shared Redis
      'test/integration/*.test.ts',
      // mesh: three node processes, one killed (SIGKILL) or frozen (SIGSTOP) under load
      'test/cluster/mesh.test.ts',
      'test/cluster/failover.test.ts',
      'test/cluster/redis-cluster.test.ts',
      // presence: a member on a killed node goes offline on the others within the node ttl
      'test/cluster/presence.test.ts',
      // notifications: scheduled ones fire on time, once, after the accepting node is killed
      'test/cluster/notifications.test.ts',
      // the web console: partition leases and lag, dead-letter requeue, live room traffic
      'test/cluster/console.test.ts',
    ],
    exclude: [
      ...(base.test?.exclude ?? []),
      // About the processes and the local redis-server a node starts, not about the topology.
      'test/integration/terminal.test.ts',
      'test/integration/lifecycle.test.ts',
      'test/integration/embedded-redis*.test.ts',
    ],
  },
});
