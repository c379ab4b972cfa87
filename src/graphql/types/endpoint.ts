import { visible } from '../../domain/access.ts';
import { createEndpoint, deleteEndpoint, rotateEndpointSecret, updateEndpoint } from '../../domain/endpoints.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { PAGE } from '../paging.ts';
import { DeliveryStatusEnum, EndpointOrderingEnum, SignatureSchemeEnum } from './enums.ts';
import { AttemptConnection, attemptsNewestFirst, DeliveryConnection } from './message.ts';

export const EndpointRef = builder.prismaNode('Endpoint', {
  id: { field: 'id' },
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.endpoint(ctx.actor)] }),
  fields: (t) => ({
    url: t.exposeString('url'),
    description: t.exposeString('description', { nullable: true }),
    eventTypes: t.exposeStringList('eventTypes', {
      description: 'Event types this endpoint receives; empty means all.',
    }),
    disabled: t.exposeBoolean('disabled'),
    disabledReason: t.exposeString('disabledReason', { nullable: true }),
    disabledAt: t.expose('disabledAt', { type: 'DateTime', nullable: true }),
    headers: t.expose('headers', { type: 'JSON', description: 'Custom headers sent with every delivery.' }),
    rateLimit: t.exposeInt('rateLimit', {
      nullable: true,
      description:
        'Most tries started per second, across all workers (any 1-second window); null: no limit. A 429 with Retry-After pauses a rate-limited endpoint for that long.',
    }),
    ordering: t.expose('ordering', { type: EndpointOrderingEnum }),
    secret: t.string({
      description:
        'What the receiver verifies the newest signatures with: the whsec_ secret, or for an ED25519 endpoint its whpk_ public key (the private key is never shown). Only the operator and the recipient can read it.',
      select: { secrets: { orderBy: { id: 'desc' }, take: 1, select: { secret: true, publicKey: true } } },
      resolve: (endpoint) => {
        const newest = endpoint.secrets[0];
        return newest ? (newest.publicKey ?? newest.secret) : '';
      },
    }),
    signatureScheme: t.field({
      type: SignatureSchemeEnum,
      description: 'The scheme of the newest signing key (rotateEndpointSecret changes it).',
      select: { secrets: { orderBy: { id: 'desc' }, take: 1, select: { publicKey: true } } },
      resolve: (endpoint) => (endpoint.secrets[0]?.publicKey ? 'ED25519' : 'HMAC_SHA256'),
    }),
    publicKey: t.string({
      nullable: true,
      description: 'The whpk_ public key of the newest ED25519 key pair; null for an HMAC_SHA256 endpoint.',
      select: { secrets: { orderBy: { id: 'desc' }, take: 1, select: { publicKey: true } } },
      resolve: (endpoint) => endpoint.secrets[0]?.publicKey ?? null,
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    app: t.relation('app'),
    recipient: t.relation('recipient'),
    recipientId: t.string({
      description: "The operator's id of the recipient.",
      select: { recipient: { select: { uid: true } } },
      resolve: (e) => e.recipient.uid,
    }),
    deliveries: t.relatedConnection(
      'deliveries',
      {
        ...PAGE,
        cursor: 'id',
        description: 'Newest first.',
        args: { status: t.arg({ type: DeliveryStatusEnum }) },
        query: (args, ctx) => ({
          where: { AND: [visible.delivery(ctx.actor), args.status ? { status: args.status } : {}] },
          orderBy: { id: 'desc' },
        }),
      },
      DeliveryConnection,
    ),
    attempts: t.relatedConnection('attempts', attemptsNewestFirst, AttemptConnection),
  }),
});

/** The endpoints of an app or a recipient: newest first, only those the actor may see. */
export const endpointsNewestFirst = {
  ...PAGE,
  cursor: 'id' as const,
  query: (_args: unknown, ctx: GraphQLContext) => ({
    where: visible.endpoint(ctx.actor),
    orderBy: { id: 'desc' as const },
  }),
};

export const EndpointConnection = builder.connectionObject({ type: EndpointRef, name: 'EndpointConnection' });

builder.queryField('endpoint', (t) =>
  t.prismaField({
    type: 'Endpoint',
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.domain.prisma.endpoint.findFirst({ ...query, where: { id: args.id, AND: [visible.endpoint(ctx.actor)] } }),
  }),
);

const CreateEndpointInput = builder.inputType('CreateEndpointInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    recipientId: t.string({
      required: true,
      description: "The operator's own id of the recipient; created on first use.",
    }),
    url: t.string({ required: true }),
    eventTypes: t.stringList({ description: 'Event types to receive; empty or absent means all.' }),
    description: t.string(),
    disabled: t.boolean(),
    headers: t.field({ type: 'JSON', description: 'Custom headers as an object of names to string values.' }),
    signatureScheme: t.field({
      type: SignatureSchemeEnum,
      description: "The scheme of the endpoint's signing key; default: the app's signatureScheme.",
    }),
    rateLimit: t.int({
      description:
        "Most tries per second (1 to 1000); absent or null: no limit. A portal token may set it unless the app's portalCanSetRateLimit is false.",
    }),
    ordering: t.field({ type: EndpointOrderingEnum, description: 'Default NONE.' }),
  }),
});

const UpdateEndpointInput = builder.inputType('UpdateEndpointInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    url: t.string(),
    eventTypes: t.stringList(),
    description: t.string(),
    disabled: t.boolean(),
    headers: t.field({ type: 'JSON' }),
    rateLimit: t.int({ description: 'Tries per second (1 to 1000); null removes the limit.' }),
    ordering: t.field({
      type: EndpointOrderingEnum,
      description:
        'Changing to FIFO orders the deliveries still waiting from their next try; changing to NONE releases the ones held back.',
    }),
  }),
});

const DeleteEndpointInput = builder.inputType('DeleteEndpointInput', {
  fields: (t) => ({ id: t.id({ required: true }) }),
});

const RotateEndpointSecretInput = builder.inputType('RotateEndpointSecretInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    gracePeriodSeconds: t.int({
      description: 'How long the old secret keeps signing: default 86400 (24 h), at most 604800 (7 days).',
    }),
    signatureScheme: t.field({
      type: SignatureSchemeEnum,
      description:
        "The scheme of the new key; default: the newest key's. Changing it moves the endpoint between v1 and v1a, with both signatures sent during the grace period.",
    }),
  }),
});

builder.mutationFields((t) => ({
  createEndpoint: t.prismaField({
    type: 'Endpoint',
    args: { input: t.arg({ type: CreateEndpointInput, required: true }) },
    resolve: async (query, _root, { input: { recipientId, ...input } }, ctx) =>
      ctx.domain.prisma.endpoint.findUniqueOrThrow({
        ...query,
        where: { id: (await createEndpoint(ctx.domain, { ...input, recipientUid: recipientId })).id },
      }),
  }),
  updateEndpoint: t.prismaField({
    type: 'Endpoint',
    args: { input: t.arg({ type: UpdateEndpointInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.endpoint.findUniqueOrThrow({
        ...query,
        where: { id: (await updateEndpoint(ctx.domain, input)).id },
      }),
  }),
  deleteEndpoint: t.prismaField({
    type: 'Endpoint',
    args: { input: t.arg({ type: DeleteEndpointInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      // Read what the client selected before the row is gone.
      const snapshot = await ctx.domain.prisma.endpoint.findFirst({
        ...query,
        where: { id: input.id, AND: [visible.endpoint(ctx.actor)] },
      });
      const deleted = await deleteEndpoint(ctx.domain, input);
      return snapshot ?? deleted;
    },
  }),
  rotateEndpointSecret: t.prismaField({
    type: 'Endpoint',
    args: { input: t.arg({ type: RotateEndpointSecretInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.endpoint.findUniqueOrThrow({
        ...query,
        where: { id: (await rotateEndpointSecret(ctx.domain, input)).id },
      }),
  }),
}));
