import SchemaBuilder from '@pothos/core';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import type PrismaTypes from '../db/generated/pothos-types.ts';
import { getDatamodel } from '../db/generated/pothos-types.ts';
import { DispatchError } from '../domain/errors.ts';
import { idType } from '../domain/ids.ts';
import type { GraphQLContext } from './context.ts';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  PrismaTypes: PrismaTypes;
  AuthScopes: { operator: boolean; portal: boolean };
  Scalars: {
    JSON: { Input: unknown; Output: unknown };
    DateTime: { Input: Date; Output: Date };
    ID: { Input: string; Output: string };
  };
  DefaultFieldNullability: false;
}>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin, PrismaPlugin, RelayPlugin, ValidationPlugin],
  scopeAuth: {
    authScopes: (ctx) => ({ operator: ctx.actor.kind === 'operator', portal: ctx.actor.kind === 'portal' }),
    unauthorizedError: () => new DispatchError('FORBIDDEN', 'this token may not do that'),
    authorizeOnSubscribe: true,
  },
  prisma: {
    client: (ctx) => ctx.domain.prisma,
    dmmf: getDatamodel(),
    exposeDescriptions: false,
    filterConnectionTotalCount: true,
    onUnusedQuery: process.env.NODE_ENV === 'production' ? null : 'warn',
  },
  relay: {
    clientMutationId: 'omit',
    cursorType: 'String',
    // Prefixed ids already tell their type, so they are the global ids.
    encodeGlobalID: (_typename, id) => String(id),
    decodeGlobalID: (globalID) => {
      const type = idType(globalID);
      if (!type) throw new DispatchError('NOT_FOUND', 'no object has that id');
      return { typename: type, id: globalID };
    },
    nodesOnConnection: true,
    defaultConnectionTypeOptions: {},
  },
  validation: {
    validationError: (failure) =>
      new DispatchError(
        'BAD_USER_INPUT',
        failure.issues.map((i) => `${(i.path ?? []).map((p) => (typeof p === 'object' ? String(p.key) : String(p))).join('.')}: ${i.message}`).join('; '),
      ),
  },
});

builder.queryType({});
builder.mutationType({});
