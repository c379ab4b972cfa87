import type { Message, Prisma } from '../../db/client.ts';
import { visible } from '../../domain/access.ts';
import { messageNamed, sendMessage, sendTestMessage } from '../../domain/messages.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { PAGE } from '../paging.ts';
import { AttemptStatusEnum, AttemptTriggerEnum, DeliveryStatusEnum } from './enums.ts';

/** Filters of a message log: by event type, delivery status and time. */
export const messageFilterArgs = builder.args((t) => ({
  eventType: t.string({ description: 'Only messages of this event type.' }),
  status: t.field({ type: DeliveryStatusEnum, description: 'Only messages with a delivery in this status.' }),
  since: t.field({ type: 'DateTime', description: 'Only messages created at or after this instant.' }),
  until: t.field({ type: 'DateTime', description: 'Only messages created before this instant.' }),
}));

export function messageFilter(args: {
  eventType?: string | null;
  status?: Prisma.DeliveryWhereInput['status'] | null;
  since?: Date | null;
  until?: Date | null;
}): Prisma.MessageWhereInput {
  const where: Prisma.MessageWhereInput = {};
  if (args.eventType) where.eventType = args.eventType;
  if (args.status) where.deliveries = { some: { status: args.status } };
  if (args.since || args.until) {
    where.createdAt = { ...(args.since ? { gte: args.since } : {}), ...(args.until ? { lt: args.until } : {}) };
  }
  return where;
}

/** The attempts of a message, a delivery or an endpoint: newest first, only those the actor may see. */
export const attemptsNewestFirst = {
  ...PAGE,
  cursor: 'id' as const,
  description: 'Newest first.',
  query: (_args: unknown, ctx: GraphQLContext) => ({
    where: visible.attempt(ctx.actor),
    orderBy: { id: 'desc' as const },
  }),
};

export const MessageRef = builder.prismaNode('Message', {
  id: { field: 'id' },
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.message(ctx.actor)] }),
  fields: (t) => ({
    messageId: t.exposeString('uid', {
      description: "The caller's messageId (idempotency key), else the same as id. Sent as webhook-id.",
    }),
    eventType: t.exposeString('eventType'),
    test: t.exposeBoolean('test', { description: 'A test event sent from the portal (sendTestMessage).' }),
    deliverAt: t.expose('deliverAt', {
      type: 'DateTime',
      nullable: true,
      description:
        'A scheduled send: no try before this time (its deliveries are SCHEDULED until then). Null when sent at once.',
    }),
    data: t.expose('data', { type: 'JSON' }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    cursor: t.field({
      type: 'Cursor',
      nullable: true,
      description:
        'On a live-feed event (messageCreated): its position, to resume after it with `after`. Null elsewhere.',
      resolve: (parent) => (parent as { cursor?: string }).cursor ?? null,
    }),
    app: t.relation('app'),
    recipient: t.relation('recipient'),
    recipientId: t.string({
      description: "The operator's id of the recipient.",
      select: { recipient: { select: { uid: true } } },
      resolve: (m) => m.recipient.uid,
    }),
    deliveries: t.relatedConnection(
      'deliveries',
      {
        ...PAGE,
        cursor: 'id',
        args: { status: t.arg({ type: DeliveryStatusEnum }) },
        query: (args, ctx) => ({
          where: { AND: [visible.delivery(ctx.actor), args.status ? { status: args.status } : {}] },
          orderBy: { id: 'asc' },
        }),
      },
      DeliveryConnection,
    ),
    attempts: t.relatedConnection('attempts', attemptsNewestFirst, AttemptConnection),
  }),
});

export const DeliveryRef = builder.prismaNode('Delivery', {
  id: { field: 'id' },
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.delivery(ctx.actor)] }),
  fields: (t) => ({
    status: t.expose('status', { type: DeliveryStatusEnum }),
    attemptCount: t.exposeInt('attemptCount'),
    nextAttemptAt: t.expose('nextAttemptAt', { type: 'DateTime', nullable: true }),
    lastAttemptAt: t.expose('lastAttemptAt', { type: 'DateTime', nullable: true }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    updatedAt: t.expose('updatedAt', { type: 'DateTime' }),
    endpoint: t.relation('endpoint'),
    message: t.relation('message'),
    heldBy: t.relation('heldBy', {
      nullable: true,
      description:
        'FIFO endpoints: the earlier delivery this one was held back behind. While it waits (PENDING with no nextAttemptAt), the first unfinished delivery before it; once its turn comes, the delivery right before it, whose turn it waited for. Kept after this one proceeds, to show why it came late.',
    }),
    attempts: t.relatedConnection('attempts', attemptsNewestFirst, AttemptConnection),
  }),
});

export const AttemptRef = builder.prismaNode('Attempt', {
  id: { field: 'id' },
  nullable: true,
  findUnique: (id, ctx) => ({ id, AND: [visible.attempt(ctx.actor)] }),
  fields: (t) => ({
    status: t.expose('status', { type: AttemptStatusEnum }),
    trigger: t.expose('trigger', { type: AttemptTriggerEnum }),
    url: t.exposeString('url'),
    responseStatusCode: t.exposeInt('responseStatusCode', { nullable: true }),
    responseBody: t.exposeString('responseBody', {
      nullable: true,
      description: 'The first 16 KiB of the response body.',
    }),
    durationMs: t.exposeInt('durationMs', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    errorKind: t.exposeString('errorKind', {
      nullable: true,
      description:
        'timeout, connection_refused, connection_reset, dns, tls, unsafe_address, redirect, http_status, invalid_response or network.',
    }),
    createdAt: t.expose('createdAt', { type: 'DateTime' }),
    finishedAt: t.expose('finishedAt', { type: 'DateTime', nullable: true }),
    cursor: t.field({
      type: 'Cursor',
      nullable: true,
      description:
        'On a live-feed event (attemptUpdated): its position, to resume after it with `after`. Null elsewhere.',
      resolve: (parent) => (parent as { cursor?: string }).cursor ?? null,
    }),
    endpoint: t.relation('endpoint'),
    message: t.relation('message'),
    delivery: t.relation('delivery'),
  }),
});

export const MessageConnection = builder.connectionObject({ type: MessageRef, name: 'MessageConnection' });
export const DeliveryConnection = builder.connectionObject({ type: DeliveryRef, name: 'DeliveryConnection' });
export const AttemptConnection = builder.connectionObject({ type: AttemptRef, name: 'AttemptConnection' });

builder.queryField('message', (t) =>
  t.prismaField({
    type: 'Message',
    nullable: true,
    description: "A message by its id (msg_…) or the caller's messageId.",
    args: { appId: t.arg.id({ required: true }), id: t.arg.id({ required: true }) },
    resolve: (query, _root, args, ctx) =>
      ctx.domain.prisma.message.findFirst({
        ...query,
        where: { AND: [messageNamed(args.appId, args.id), visible.message(ctx.actor)] },
        orderBy: { id: 'asc' },
      }),
  }),
);

const SendMessageInput = builder.inputType('SendMessageInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    recipientId: t.string({
      required: true,
      description: "The operator's own id of the recipient; created on first use.",
    }),
    eventType: t.string({ required: true }),
    data: t.field({ type: 'JSON', required: true }),
    messageId: t.string({
      description: 'Your id for this message; sending it again deduplicates. Sent as webhook-id.',
    }),
    idempotencyKey: t.string({ description: 'Another name for messageId.' }),
    deliverAt: t.field({
      type: 'DateTime',
      description:
        'Schedule the send: stored now (the messageId deduplicates now), first try not before this time. ' +
        'At most 30 days ahead (DELIVER_AT_TOO_LATE beyond); a past time means now.',
    }),
  }),
});

const SendMessagePayload = builder
  .objectRef<{ message: Message; deduplicated: boolean }>('SendMessagePayload')
  .implement({
    fields: (t) => ({
      message: t.field({ type: MessageRef, resolve: (payload) => payload.message }),
      deduplicated: t.exposeBoolean('deduplicated', {
        description:
          'True when this id was sent before: the original message is returned and nothing new is delivered.',
      }),
    }),
  });

builder.mutationField('sendMessage', (t) =>
  t.field({
    type: SendMessagePayload,
    authScopes: { operator: true },
    args: { input: t.arg({ type: SendMessageInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { recipientId, messageId, ...rest } = input;
      const { message, deduplicated } = await sendMessage(ctx.domain, {
        ...rest,
        recipientUid: recipientId,
        messageUid: messageId,
      });
      return { message, deduplicated };
    },
  }),
);

const SendTestMessageInput = builder.inputType('SendTestMessageInput', {
  fields: (t) => ({
    eventType: t.string({ required: true, description: "An active event type of the portal token's app." }),
    data: t.field({
      type: 'JSON',
      description: "The data; checked against the event type's schema. Absent: the event type's example.",
    }),
    endpointId: t.id({
      description: "One of the recipient's own endpoints; absent: every enabled endpoint that takes the event type.",
    }),
  }),
});

builder.mutationField('sendTestMessage', (t) =>
  t.field({
    type: SendMessagePayload,
    description:
      "A portal token's test event: a message marked test, to its own recipient's endpoints only. API keys use sendMessage.",
    authScopes: { portal: true },
    args: { input: t.arg({ type: SendTestMessageInput, required: true }) },
    resolve: async (_root, { input }, ctx) => {
      const { message, deduplicated } = await sendTestMessage(ctx.domain, input);
      return { message, deduplicated };
    },
  }),
);
