// Lint = TypeScript rules + Nx module boundaries. Boundaries encode docs/reference/design.md's one-way
// dependencies (core ← model ← trainer, core ← data-prep, eval uses core + model) and the
// banned imports of docs/reference/style.md: no tfjs in data-prep, no sharp / BullMQ / S3 SDK in model.
import nx from '@nx/eslint-plugin';

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  {
    ignores: ['.tmp/**', '**/dist', '**/node_modules', '**/.nx', '**/*.d.ts', '**/assets/**', '**/fixtures/**', 'out/**', 'runs/**', 'packages/*/assembly/**'],
  },
  {
    files: ['**/*.ts', '**/*.mjs', '**/*.js'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: false,
          // infra/ (local Redis / S3 servers for tests, demo and CI) is not a project.
          allow: ['../infra/**'],
          depConstraints: [
            { sourceTag: 'scope:core', onlyDependOnLibsWithTags: [], bannedExternalImports: ['@tensorflow/*', 'bullmq'] },
            {
              sourceTag: 'scope:model',
              onlyDependOnLibsWithTags: ['scope:core'],
              bannedExternalImports: ['sharp', 'bullmq', '@aws-sdk/*', 'ioredis', 'parquetjs-lite'],
            },
            { sourceTag: 'scope:data-prep', onlyDependOnLibsWithTags: ['scope:core'], bannedExternalImports: ['@tensorflow/*'] },
            { sourceTag: 'scope:trainer', onlyDependOnLibsWithTags: ['scope:core', 'scope:model'], bannedExternalImports: ['sharp'] },
            { sourceTag: 'scope:eval', onlyDependOnLibsWithTags: ['scope:core', 'scope:model'] },
            // tools/ (Nx project "pipeline"): the demo and repro checks drive every package's CLI.
            { sourceTag: 'scope:pipeline', onlyDependOnLibsWithTags: ['scope:core', 'scope:model'] },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
];
