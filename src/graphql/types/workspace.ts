import type { ApiKey } from '../../db/client.ts';
import { visible } from '../../domain/access.ts';
import { type CreatedApiKey, createApiKey, revokeApiKey } from '../../domain/api-keys.ts';
import { forbidden, notFound } from '../../domain/errors.ts';
import { builder } from '../builder.ts';
import { PAGE } from '../paging.ts';

builder.prismaNode('Workspace', {
  id: { field: 'id' },
  nullable: true,
  authScopes: { operator: true },
  findUnique: (id, ctx) => ({ id, AND: [visible.workspace(ctx.actor)] }),
  fields: (t) => ({
    name: t.exposeString('name'),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    apiKeys: t.relatedConnection(
      'apiKeys',
      {
        ...PAGE,
        cursor: 'id',
        args: { includeRevoked: t.arg.boolean({ defaultValue: false }) },
        query: (args, ctx) => ({
          where: { AND: [visible.apiKey(ctx.actor), args.includeRevoked ? {} : { revokedAt: null }] },
          orderBy: { id: 'desc' },
        }),
      },
      ApiKeyConnection,
    ),
  }),
});

export const ApiKeyRef = builder.prismaNode('ApiKey', {
  id: { field: 'id' },
  nullable: true,
  authScopes: { operator: true },
  findUnique: (id, ctx) => ({ id, AND: [visible.apiKey(ctx.actor)] }),
  fields: (t) => ({
    name: t.exposeString('name', { nullable: true }),
    prefix: t.exposeString('prefix', { description: 'The first characters of the token, to tell keys apart.' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    lastUsedAt: t.expose('lastUsedAt', { type: 'DateTime', nullable: true }),
    revokedAt: t.expose('revokedAt', { type: 'DateTime', nullable: true }),
  }),
});

export const ApiKeyConnection = builder.connectionObject({ type: ApiKeyRef, name: 'ApiKeyConnection' });

const CreatedApiKeyRef = builder.objectRef<CreatedApiKey>('CreatedApiKey').implement({
  description: 'A new API key. The token is shown once and stored only hashed.',
  fields: (t) => ({
    token: t.exposeString('token'),
    apiKey: t.field({ type: ApiKeyRef, resolve: (created) => created.apiKey as ApiKey }),
  }),
});

const CreateApiKeyInput = builder.inputType('CreateApiKeyInput', {
  fields: (t) => ({ name: t.string({ description: 'A label to tell keys apart.' }) }),
});

const RevokeApiKeyInput = builder.inputType('RevokeApiKeyInput', { fields: (t) => ({ id: t.id({ required: true }) }) });

builder.mutationFields((t) => ({
  createApiKey: t.field({
    type: CreatedApiKeyRef,
    description: "A new API key of this token's workspace.",
    authScopes: { operator: true },
    args: { input: t.arg({ type: CreateApiKeyInput, required: false }) },
    resolve: async (_root, { input }, ctx) => {
      const workspace = await ctx.domain.prisma.workspace.findFirstOrThrow({ where: visible.workspace(ctx.actor) });
      return createApiKey(ctx.domain.prisma, { workspaceName: workspace.name, name: input?.name });
    },
  }),
  revokeApiKey: t.field({
    type: ApiKeyRef,
    authScopes: { operator: true },
    args: { input: t.arg({ type: RevokeApiKeyInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      if (ctx.actor.kind !== 'operator') throw forbidden();
      const revoked = await revokeApiKey(ctx.domain.prisma, { workspaceId: ctx.actor.workspaceId, id: input.id });
      if (!revoked) throw notFound('API key');
      return revoked as ApiKey;
    },
  }),
}));
