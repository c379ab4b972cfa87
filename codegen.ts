import type { CodegenConfig } from '@graphql-codegen/cli';

// Typed documents from schema.graphql for the portal SPA's operations
// (portal-app/src/**/*.graphql, as plain strings so the browser needs no GraphQL
// runtime). Generated at install and by `npm run codegen`. The client package's
// documents have their own config: packages/client/codegen.ts.
const scalars = { DateTime: 'string', Cursor: 'string', JSON: 'unknown', ID: 'string' };

const config: CodegenConfig = {
  schema: 'schema.graphql',
  overwrite: true,
  generates: {
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
