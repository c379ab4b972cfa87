import SchemaBuilder from '@pothos/core';
import PrismaPlugin from '@pothos/plugin-prisma';
import RelayPlugin from '@pothos/plugin-relay';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import ValidationPlugin from '@pothos/plugin-validation';
import type { GraphQLSchema } from 'graphql';
import type PrismaTypes from '../db/generated/pothos-types.ts';
import { getDatamodel } from '../db/generated/pothos-types.ts';
import { DispatchError } from '../domain/errors.ts';
import { idType } from '../domain/ids.ts';
import type { GraphQLContext } from './context.ts';

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** Whether `typename` is a type of the schema that implements Node (read by shape: graphql-js may be loaded twice). */
function isNodeType(schema: GraphQLSchema, typename: string): boolean {
  const type = typename ? schema.getType(typename) : undefined;
  return !!type && 'getInterfaces' in type && type.getInterfaces().some((i) => i.name === 'Node');
}

export const builder = new SchemaBuilder<{
  Context: GraphQLContext;
  PrismaTypes: PrismaTypes;
  AuthScopes: { operator: boolean; portal: boolean };
  Scalars: {
    JSON: { Input: unknown; Output: unknown };
    DateTime: { Input: Date; Output: Date };
    Cursor: { Input: string; Output: string };
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
    // An id of no loadable type (garbage, a secret's, a session's) is looked up as
    // nothing, so node(id:)/nodes(ids:) answer it like a missing one: null.
    decodeGlobalID: (globalID) => ({ typename: idType(globalID) ?? '', id: globalID }),
    nodeQueryOptions: {
      resolve: (_root, args, _ctx, info, resolveNode) =>
        isNodeType(info.schema, args.id.typename) ? resolveNode(args.id) : null,
    },
    nodesQueryOptions: {
      resolve: (_root, args, _ctx, info, resolveNodes) => {
        // resolveNodes loads args.ids and skips null entries.
        args.ids = args.ids.map((id) => (id && isNodeType(info.schema, id.typename) ? id : null)) as typeof args.ids;
        return resolveNodes(args.ids);
      },
    },
    nodesOnConnection: true,
    defaultConnectionTypeOptions: {},
  },
  validation: {
    validationError: (failure) =>
      new DispatchError(
        'BAD_USER_INPUT',
        failure.issues
          .map(
            (i) =>
              `${(i.path ?? []).map((p) => (typeof p === 'object' ? String(p.key) : String(p))).join('.')}: ${i.message}`,
          )
          .join('; '),
      ),
  },
});

builder.queryType({});
builder.mutationType({});
builder.subscriptionType({});
