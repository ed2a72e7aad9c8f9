import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'node',
    // One Redis for the whole run (REDIS_URL, a local redis-server, or Docker).
    globalSetup: ['test/global-setup.ts'],
    include: ['test/**/*.test.ts'],
    // Chaos tests kill and partition nodes; they run on their own, not in `npm test`.
    exclude: [...configDefaults.exclude, 'test/chaos/**', 'bench/**'],
    // Generous: the embedded auth database's first open creates its files (seconds when busy).
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 30_000,
    // Tests spawn child processes (redis-server, relay nodes); forks isolate them best.
    pool: 'forks',
  },
});
