import type { CodegenConfig } from '@graphql-codegen/cli';

// Typed documents from schema.graphql: the operator client's operations
// (src/client/operations.graphql) and the portal SPA's (portal-app/src/**/*.graphql,
// as plain strings so the browser needs no GraphQL runtime). Generated at install
// and by `npm run codegen`.
const scalars = { DateTime: 'string', JSON: 'unknown', ID: 'string' };

const config: CodegenConfig = {
  schema: 'schema.graphql',
  overwrite: true,
  generates: {
    'src/client/generated.ts': {
      documents: ['src/client/operations.graphql'],
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        scalars,
        enumsAsTypes: true,
        useTypeImports: true,
        avoidOptionals: { field: true, inputValue: false, object: true },
      },
    },
    'portal-app/src/generated.ts': {
      documents: ['portal-app/src/**/*.graphql'],
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        scalars,
        enumsAsTypes: true,
        useTypeImports: true,
        documentMode: 'string',
        avoidOptionals: { field: true, inputValue: false, object: true },
      },
    },
  },
};

export default config;
