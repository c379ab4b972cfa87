import { visible } from '../../domain/access.ts';
import { enableOperationalEvents } from '../../domain/operational-events.ts';
import { builder } from '../builder.ts';

/**
 * An operational event as the `operationalEvent` subscription shows it: a
 * message of the workspace's operational app (the same one its webhooks carry).
 */
export const OperationalEventRef = builder.prismaObject('Message', {
  variant: 'OperationalEvent',
  description:
    "One of Dispatch's operational events (endpoint.disabled, endpoint.failing, …): a message of the workspace's operational app. Its webhook body is {type, timestamp, data}.",
  fields: (t) => ({
    id: t.exposeID('id', { description: 'The message (msg_…) that carries it; also its webhook-id.' }),
    type: t.exposeString('eventType'),
    timestamp: t.expose('createdAt', { type: 'DateTime' }),
    data: t.expose('data', { type: 'JSON' }),
    message: t.variant('Message'),
  }),
});

builder.objectFields('Workspace' as never, () => ({}));

builder.mutationField('enableOperationalEvents', (t) =>
  t.prismaField({
    type: 'App',
    authScopes: { operator: true },
    description:
      'Turns operational events on for this workspace (idempotent): creates its operational app, with Dispatch\'s operational event types (descriptions and JSON Schemas) and the recipient "operator". ' +
      'Subscribe endpoints of recipient "operator" of that app (createEndpoint, with an eventTypes filter if you like) to receive them as signed webhooks; the subscription operationalEvent streams them.',
    resolve: async (query, _root, _args, ctx) =>
      ctx.domain.prisma.app.findUniqueOrThrow({
        ...query,
        where: { id: (await enableOperationalEvents(ctx.domain)).id },
      }),
  }),
);

builder.queryField('operationalApp', (t) =>
  t.prismaField({
    type: 'App',
    nullable: true,
    authScopes: { operator: true },
    description:
      "The workspace's operational app, or null while operational events are off (see enableOperationalEvents).",
    resolve: (query, _root, _args, ctx) =>
      ctx.domain.prisma.app.findFirst({
        ...query,
        where: { operational: true, AND: [visible.app(ctx.actor)] },
        orderBy: { id: 'asc' },
      }),
  }),
);
