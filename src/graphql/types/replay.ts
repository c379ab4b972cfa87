import { recoverEndpoint, resendMessage } from '../../domain/replay.ts';
import { builder } from '../builder.ts';

const ResendMessageInput = builder.inputType('ResendMessageInput', {
  fields: (t) => ({
    appId: t.id({ required: true }),
    messageId: t.id({ required: true, description: "The message's id (msg_…) or the caller's messageId." }),
    endpointId: t.id({
      description: 'Only this endpoint; absent means every enabled endpoint that subscribes to the event type.',
    }),
  }),
});

const RecoverEndpointInput = builder.inputType('RecoverEndpointInput', {
  fields: (t) => ({
    endpointId: t.id({ required: true }),
    since: t.field({
      type: 'DateTime',
      required: true,
      description: 'Failed deliveries created at or after this time.',
    }),
    until: t.field({ type: 'DateTime', description: 'And before this time; default now.' }),
  }),
});

const RecoverPayload = builder.objectRef<{ queued: number }>('RecoverPayload').implement({
  fields: (t) => ({
    queued: t.exposeInt('queued', { description: 'Failed deliveries queued for a manual attempt.' }),
  }),
});

builder.mutationFields((t) => ({
  resendMessage: t.prismaField({
    type: ['Delivery'],
    description:
      'A manual attempt now, to one endpoint or to every subscribed enabled endpoint. A disabled endpoint is ENDPOINT_DISABLED.',
    args: { input: t.arg({ type: ResendMessageInput, required: true }) },
    resolve: async (query, _root, { input }, ctx) => {
      const deliveries = await resendMessage(ctx.domain, input);
      return ctx.domain.prisma.delivery.findMany({
        ...query,
        where: { id: { in: deliveries.map((d) => d.id) } },
        orderBy: { id: 'asc' },
      });
    },
  }),
  recoverEndpoint: t.field({
    type: RecoverPayload,
    description: 'Resends, as background work, every failed delivery of an endpoint created in a time window.',
    args: { input: t.arg({ type: RecoverEndpointInput, required: true }) },
    resolve: (_root, { input }, ctx) => recoverEndpoint(ctx.domain, input),
  }),
}));
