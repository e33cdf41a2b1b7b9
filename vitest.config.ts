import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests run on the TypeScript sources: each workspace package resolves to its src/index.ts.
// Subpath entries first: a key also matches "<key>/…".
const alias = {
  '@smolrate/core/testing': root('./packages/core/src/testing.ts'),
  '@smolrate/core/redis-server': root('./packages/core/src/services/redis-server.ts'),
  '@smolrate/core': root('./packages/core/src/index.ts'),
  '@smolrate/model': root('./packages/model/src/index.ts'),
  '@smolrate/data-prep': root('./packages/data-prep/src/index.ts'),
  '@smolrate/trainer': root('./packages/trainer/src/index.ts'),
  '@smolrate/eval': root('./apps/eval/src/index.ts'),
};

const projects: Array<[string, string]> = [
  ['core', 'packages/core'],
  ['model', 'packages/model'],
  ['data-prep', 'packages/data-prep'],
  ['trainer', 'packages/trainer'],
  ['eval', 'apps/eval'],
  ['infra', 'infra'],
];

export default defineConfig({
  resolve: { alias },
  test: {
    // Starts (or reuses, via REDIS_URL / S3_ENDPOINT) a real redis-server and a real
    // S3-compatible server on loopback for the integration tests, and stops them afterwards.
    // SMOLRATE_TEST_SERVICES=0 skips them (unit tests only, while developing).
    globalSetup: process.env.SMOLRATE_TEST_SERVICES === '0' ? [] : [root('./infra/vitest-global-setup.ts')],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 120_000,
    projects: projects.map(([name, dir]) => ({
      extends: true,
      test: {
        name,
        include: [`${dir}/src/**/*.spec.ts`, `${dir}/tests/**/*.spec.ts`],
      },
    })),
  },
});
