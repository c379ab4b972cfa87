import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // Node (and so `npm start`) loads graphql's CommonJS build; Vite would give
    // our own files its ESM build, so graphql-js would exist twice in tests and
    // its instanceof checks (yoga's error status, schema types) would disagree.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: files run two at a time, each on its own database.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
