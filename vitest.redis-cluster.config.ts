import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * The Redis Cluster tier (`npm run test:redis-cluster`): the commit, relay, WebSocket, SMS
 * and mesh suites again, on a real three-master Redis Cluster instead of one standalone
 * server. One suite per topology, as socket.io's Redis Streams adapter does.
 */

// Read by test/global-setup.ts, which runs in this process: it starts the cluster (or takes
// REDIS_URL as a node of a running one) and tells the tests (inject('redisTopology')).
process.env.THRESHOLD_TEST_REDIS = 'cluster';

export default defineConfig({
  test: {
    ...base.test,
    include: [
      // commit
      'test/integration/commit.test.ts',
      'test/integration/committer.test.ts',
      'test/integration/funnel.test.ts',
      // relay
      'test/integration/relay.test.ts',
      'test/integration/rooms.test.ts',
      // WebSocket
      'test/integration/websocket.test.ts',
      // SMS
      'test/integration/sms.test.ts',
      'test/integration/sms-delivery.test.ts',
      // mesh: three node processes, one killed (SIGKILL) or frozen (SIGSTOP) under load
      'test/cluster/mesh.test.ts',
      'test/cluster/failover.test.ts',
    ],
  },
});
