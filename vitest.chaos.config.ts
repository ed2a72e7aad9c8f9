import { defineConfig } from 'vitest/config';

/**
 * The reliability and security suite (`npm run test:chaos`): faults (killed, paused and
 * restarted nodes, a restarted or unreachable Redis, a failing Twilio) and abuse (fuzzed
 * HTTP, hostile WebSocket clients, forged tokens and signatures). `CHAOS_SHORT=1` runs
 * every scenario for a shorter time; CI runs that form.
 */
export default defineConfig({
  test: {
    environment: 'node',
    globalSetup: ['test/global-setup.ts'],
    include: ['test/chaos/**/*.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    pool: 'forks',
    // Scenarios start several node processes and load them; on a small machine two at once
    // would measure each other.
    fileParallelism: false,
  },
});
