import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

const TIMING_SENSITIVE = [
  'test/integration/live-feed-load.test.ts',
  'test/integration/fault-*.test.ts',
  'test/integration/delivery-crash.test.ts',
  'test/integration/delivery-isolation.test.ts',
  'test/integration/retention.test.ts',
  'test/integration/oversized-documents.test.ts',
];

export default defineConfig({
  resolve: {
    // Node (and so `npm start`) loads graphql's CommonJS build; Vite would give
    // our own files its ESM build, so graphql-js would exist twice in tests and
    // its instanceof checks (yoga's error status, schema types) would disagree.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    // expect.poll waits for a condition; its default of 1 s fails on a busy
    // machine while the condition is still on its way. Speed is the bench's job.
    expect: { poll: { timeout: 15_000, interval: 50 } },
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        // Two cores: files run two at a time, each on its own database.
        test: {
          name: 'parallel',
          include: ['test/**/*.test.ts'],
          exclude: TIMING_SENSITIVE,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        // Files that measure time under load (1,000 events/s, kill and restart
        // timings, a retention soak) run afterwards, one at a time, so another
        // file's load cannot make them fail.
        test: {
          name: 'alone',
          include: TIMING_SENSITIVE,
          maxWorkers: 1,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
