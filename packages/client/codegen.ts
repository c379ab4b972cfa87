import type { CodegenConfig } from '@graphql-codegen/cli';

// The client's typed documents (src/generated.ts) from the repository's
// schema.graphql and src/operations.graphql. Run from this folder (the
// package's `codegen` and `build` scripts do). src/generated.ts is committed
// so `npm run client:check` (in CI) fails when it no longer matches schema.graphql.
const config: CodegenConfig = {
  schema: '../../schema.graphql',
  overwrite: true,
  generates: {
    'src/generated.ts': {
      documents: ['src/operations.graphql'],
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        scalars: { DateTime: 'string', Cursor: 'string', JSON: 'unknown', ID: 'string' },
        enumsAsTypes: true,
        useTypeImports: true,
        avoidOptionals: { field: true, inputValue: false, object: true },
      },
    },
  },
};

export default config;
