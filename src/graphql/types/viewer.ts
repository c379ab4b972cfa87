import { visible } from '../../domain/access.ts';
import type { Actor } from '../../domain/actor.ts';
import { builder } from '../builder.ts';
import { ViewerKindEnum } from './enums.ts';

const Viewer = builder.objectRef<Actor>('Viewer').implement({
  description: 'Who the token is: an operator (a workspace) or a portal session (one recipient of one app).',
  fields: (t) => ({
    kind: t.field({ type: ViewerKindEnum, resolve: (actor) => (actor.kind === 'operator' ? 'OPERATOR' : 'PORTAL') }),
    workspace: t.prismaField({
      type: 'Workspace',
      nullable: true,
      resolve: (query, actor, _args, ctx) =>
        actor.kind === 'operator'
          ? ctx.domain.prisma.workspace.findFirst({ ...query, where: visible.workspace(actor) })
          : null,
    }),
    app: t.prismaField({
      type: 'App',
      nullable: true,
      resolve: (query, actor, _args, ctx) =>
        actor.kind === 'portal' ? ctx.domain.prisma.app.findFirst({ ...query, where: { id: actor.appId } }) : null,
    }),
    recipient: t.prismaField({
      type: 'Recipient',
      nullable: true,
      resolve: (query, actor, _args, ctx) =>
        actor.kind === 'portal'
          ? ctx.domain.prisma.recipient.findFirst({ ...query, where: { id: actor.recipientId } })
          : null,
    }),
  }),
});

builder.queryField('viewer', (t) => t.field({ type: Viewer, resolve: (_root, _args, ctx) => ctx.actor }));
