import { visible } from '../../domain/access.ts';
import { createApp, DEFAULT_ATTEMPT_TIMEOUT_MS, updateApp } from '../../domain/apps.ts';
import { archiveEventType, createEventType, unarchiveEventType } from '../../domain/event-types.ts';
import { exampleOf } from '../../domain/json-schema.ts';
import { scheduleOf } from '../../webhooks/retry.ts';
import { builder } from '../builder.ts';
import { PAGE } from '../paging.ts';
import { EndpointConnection, endpointsNewestFirst } from './endpoint.ts';
import { SignatureSchemeEnum } from './enums.ts';
import { MessageConnection, messageFilter, messageFilterArgs } from './message.ts';

export const AppRef = builder.prismaNode('App', {
  id: { field: 'id' },
  // Every node type: node(id:)/nodes(ids:) load a foreign or missing id as null, not as an error.
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.app(ctx.actor)] }),
  fields: (t) => ({
    name: t.exposeString('name'),
    retrySchedule: t.field({
      type: ['Int'],
      description:
        'Delays in seconds between tries, after the first (the default schedule unless overridden). Operators only.',
      authScopes: { operator: true },
      select: { retrySchedule: true },
      resolve: (app) => [...scheduleOf(app.retrySchedule)],
    }),
    attemptTimeoutMs: t.int({
      description: 'Operators only.',
      authScopes: { operator: true },
      select: { attemptTimeoutMs: true },
      resolve: (app) => app.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
    }),
    signatureScheme: t.expose('signatureScheme', {
      type: SignatureSchemeEnum,
      description: 'The scheme of the signing key a new endpoint gets when it does not choose one.',
    }),
    portalCanSetRateLimit: t.exposeBoolean('portalCanSetRateLimit', {
      description: "Whether customers may set their endpoints' rateLimit in the portal (the operator always may).",
    }),
    operational: t.exposeBoolean('operational', {
      description:
        "Whether this is the workspace's operational app: Dispatch sends its operational events as this app's messages (see enableOperationalEvents).",
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    eventTypes: t.relation('eventTypes', {
      args: {
        includeArchived: t.arg.boolean({
          defaultValue: false,
          description: 'Operators only; portal tokens never see archived types.',
        }),
      },
      query: (args, ctx) => ({
        where: { AND: [visible.eventType(ctx.actor), args.includeArchived ? {} : { archivedAt: null }] },
        orderBy: { name: 'asc' },
      }),
    }),
    eventType: t.prismaField({
      type: 'EventType',
      nullable: true,
      args: { name: t.arg.string({ required: true }) },
      resolve: (query, app, args, ctx) =>
        ctx.domain.prisma.eventType.findFirst({
          ...query,
          where: { appId: app.id, name: args.name, AND: [visible.eventType(ctx.actor)] },
        }),
    }),
    recipients: t.relatedConnection(
      'recipients',
      {
        ...PAGE,
        cursor: 'id',
        query: (_args, ctx) => ({ where: visible.recipient(ctx.actor), orderBy: { id: 'desc' } }),
      },
      RecipientConnection,
    ),
    recipient: t.prismaField({
      type: 'Recipient',
      nullable: true,
      args: { recipientId: t.arg.string({ required: true, description: "The operator's own id of the recipient." }) },
      resolve: (query, app, args, ctx) =>
        ctx.domain.prisma.recipient.findFirst({
          ...query,
          where: { appId: app.id, uid: args.recipientId, AND: [visible.recipient(ctx.actor)] },
        }),
    }),
    endpoints: t.relatedConnection('endpoints', endpointsNewestFirst, EndpointConnection),
    messages: t.relatedConnection(
      'messages',
      {
        ...PAGE,
        cursor: 'id',
        description: 'Newest first.',
        args: {
          ...messageFilterArgs,
          recipientId: t.arg.string({ description: "Only this recipient's messages (the operator's id)." }),
        },
        query: (args, ctx) => ({
          where: {
            AND: [
              visible.message(ctx.actor),
              messageFilter(args),
              args.recipientId ? { recipient: { uid: args.recipientId } } : {},
            ],
          },
          orderBy: { id: 'desc' },
        }),
      },
      MessageConnection,
    ),
  }),
});

builder.prismaNode('EventType', {
  id: { field: 'id' },
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.eventType(ctx.actor)] }),
  fields: (t) => ({
    name: t.exposeString('name'),
    description: t.exposeString('description', { nullable: true }),
    schema: t.expose('schema', {
      type: 'JSON',
      nullable: true,
      description: 'JSON Schema that message data must match.',
    }),
    example: t.field({
      type: 'JSON',
      description:
        "Example data: the schema's first `examples` entry, else one made from the schema ({} without one). What sendTestMessage sends when given no data.",
      select: { schema: true },
      resolve: (et) => exampleOf(et.schema),
    }),
    archived: t.boolean({ select: { archivedAt: true }, resolve: (et) => et.archivedAt !== null }),
    archivedAt: t.expose('archivedAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
  }),
});

export const RecipientRef = builder.prismaNode('Recipient', {
  id: { field: 'id' },
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.recipient(ctx.actor)] }),
  fields: (t) => ({
    recipientId: t.exposeString('uid', { description: "The operator's own id of this recipient." }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    app: t.relation('app'),
    endpoints: t.relatedConnection('endpoints', endpointsNewestFirst, EndpointConnection),
    messages: t.relatedConnection(
      'messages',
      {
        ...PAGE,
        cursor: 'id',
        description: 'Newest first.',
        args: messageFilterArgs,
        query: (args, ctx) => ({
          where: { AND: [visible.message(ctx.actor), messageFilter(args)] },
          orderBy: { id: 'desc' },
        }),
      },
      MessageConnection,
    ),
  }),
});

export const AppConnection = builder.connectionObject({ type: AppRef, name: 'AppConnection' });
export const RecipientConnection = builder.connectionObject({ type: RecipientRef, name: 'RecipientConnection' });

builder.queryFields((t) => ({
  apps: t.prismaConnection(
    {
      type: 'App',
      ...PAGE,
      cursor: 'id',
      description: "The apps this token may see: the workspace's, or a portal token's one app. Newest first.",
      resolve: (query, _root, _args, ctx) =>
        ctx.domain.prisma.app.findMany({ ...query, where: visible.app(ctx.actor), orderBy: { id: 'desc' } }),
    },
    AppConnection,
  ),
  app: t.prismaField({
    type: 'App',
    nullable: true,
    args: { id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.domain.prisma.app.findFirst({ ...query, where: { id: args.id, AND: [visible.app(ctx.actor)] } }),
  }),
  recipient: t.prismaField({
    type: 'Recipient',
    nullable: true,
    args: {
      appId: t.arg.id({ required: true }),
      recipientId: t.arg.string({ required: true, description: "The operator's own id of the recipient." }),
    },
    resolve: (query, _root, args, ctx) =>
      ctx.domain.prisma.recipient.findFirst({
        ...query,
        where: { appId: args.appId, uid: args.recipientId, AND: [visible.recipient(ctx.actor)] },
      }),
  }),
}));

const CreateAppInput = builder.inputType('CreateAppInput', {
  fields: (t) => ({
    name: t.string({ required: true }),
    retrySchedule: t.intList({
      description:
        'Delays in seconds between tries, after the first. Default: 5, 300, 1800, 7200, 18000, 36000, 36000.',
    }),
    attemptTimeoutMs: t.int({ description: 'Timeout of one try in milliseconds (100 to 60000). Default 15000.' }),
    signatureScheme: t.field({
      type: SignatureSchemeEnum,
      description: "The scheme of new endpoints' signing keys. Default HMAC_SHA256.",
    }),
    portalCanSetRateLimit: t.boolean({
      description: "Whether customers may set their endpoints' rateLimit in the portal. Default true.",
    }),
  }),
});

const UpdateAppInput = builder.inputType('UpdateAppInput', {
  fields: (t) => ({
    id: t.id({ required: true }),
    name: t.string(),
    retrySchedule: t.intList({ description: 'An empty list restores the default schedule.' }),
    attemptTimeoutMs: t.int(),
    signatureScheme: t.field({
      type: SignatureSchemeEnum,
      description: 'For endpoints created from now on; an existing endpoint changes scheme by rotateEndpointSecret.',
    }),
    portalCanSetRateLimit: t.boolean(),
  }),
});

const CreateEventTypeInput = builder.inputType('CreateEventTypeInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    name: t.string({
      required: true,
      description: 'Dot-separated segments of letters, digits, "_" and "-", e.g. invoice.paid.',
    }),
    description: t.string(),
    schema: t.field({ type: 'JSON', description: 'A JSON Schema that message data must match.' }),
  }),
});

const ArchiveEventTypeInput = builder.inputType('ArchiveEventTypeInput', {
  fields: (t) => ({ appId: t.id({ required: true }), name: t.string({ required: true }) }),
});

builder.mutationFields((t) => ({
  createApp: t.prismaField({
    type: 'App',
    authScopes: { operator: true },
    args: { input: t.arg({ type: CreateAppInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.app.findUniqueOrThrow({ ...query, where: { id: (await createApp(ctx.domain, input)).id } }),
  }),
  updateApp: t.prismaField({
    type: 'App',
    authScopes: { operator: true },
    args: { input: t.arg({ type: UpdateAppInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.app.findUniqueOrThrow({ ...query, where: { id: (await updateApp(ctx.domain, input)).id } }),
  }),
  createEventType: t.prismaField({
    type: 'EventType',
    authScopes: { operator: true },
    args: { input: t.arg({ type: CreateEventTypeInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.eventType.findUniqueOrThrow({
        ...query,
        where: { id: (await createEventType(ctx.domain, input)).id },
      }),
  }),
  archiveEventType: t.prismaField({
    type: 'EventType',
    authScopes: { operator: true },
    args: { input: t.arg({ type: ArchiveEventTypeInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.eventType.findUniqueOrThrow({
        ...query,
        where: { id: (await archiveEventType(ctx.domain, input)).id },
      }),
  }),
  unarchiveEventType: t.prismaField({
    type: 'EventType',
    description: 'Makes an archived event type active again, with its description and schema as they were.',
    authScopes: { operator: true },
    args: { input: t.arg({ type: ArchiveEventTypeInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) =>
      ctx.domain.prisma.eventType.findUniqueOrThrow({
        ...query,
        where: { id: (await unarchiveEventType(ctx.domain, input)).id },
      }),
  }),
}));
