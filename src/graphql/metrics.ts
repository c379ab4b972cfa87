import client from 'prom-client';

import { registry } from '../metrics.ts';

export const graphqlOperations = new client.Counter({
  name: 'dispatch_graphql_operations_total',
  help: 'GraphQL operations executed, by type and operation name.',
  labelNames: ['type', 'name'] as const,
  registers: [registry],
});

export const graphqlErrors = new client.Counter({
  name: 'dispatch_graphql_errors_total',
  help: 'GraphQL errors returned, by extensions.code.',
  labelNames: ['code'] as const,
  registers: [registry],
});
