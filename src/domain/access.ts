import type { Prisma } from '../db/client.ts';
import type { Actor } from './actor.ts';

/**
 * What an actor may see, as Prisma filters: the one place that confines an
 * operator to its workspace and a portal token to its recipient. Every lookup
 * and list (root fields, nested connections, node(id:), subscriptions) goes
 * through these, so a foreign id answers exactly as a missing one.
 */
const NOTHING = { id: { in: [] as string[] } };

export const visible = {
  workspace(actor: Actor): Prisma.WorkspaceWhereInput {
    return actor.kind === 'operator' ? { id: actor.workspaceId } : NOTHING;
  },
  apiKey(actor: Actor): Prisma.ApiKeyWhereInput {
    return actor.kind === 'operator' ? { workspaceId: actor.workspaceId } : NOTHING;
  },
  app(actor: Actor): Prisma.AppWhereInput {
    return actor.kind === 'operator' ? { workspaceId: actor.workspaceId } : { id: actor.appId };
  },
  eventType(actor: Actor): Prisma.EventTypeWhereInput {
    return actor.kind === 'operator'
      ? { app: { workspaceId: actor.workspaceId } }
      : { appId: actor.appId, archivedAt: null };
  },
  recipient(actor: Actor): Prisma.RecipientWhereInput {
    return actor.kind === 'operator' ? { app: { workspaceId: actor.workspaceId } } : { id: actor.recipientId };
  },
  endpoint(actor: Actor): Prisma.EndpointWhereInput {
    return actor.kind === 'operator' ? { app: { workspaceId: actor.workspaceId } } : { recipientId: actor.recipientId };
  },
  message(actor: Actor): Prisma.MessageWhereInput {
    return actor.kind === 'operator' ? { app: { workspaceId: actor.workspaceId } } : { recipientId: actor.recipientId };
  },
  // Deliveries and attempts have no key to App of their own (see
  // prisma/schema.prisma): an operator reaches them through their message.
  delivery(actor: Actor): Prisma.DeliveryWhereInput {
    return actor.kind === 'operator'
      ? { message: { app: { workspaceId: actor.workspaceId } } }
      : { recipientId: actor.recipientId };
  },
  attempt(actor: Actor): Prisma.AttemptWhereInput {
    return actor.kind === 'operator'
      ? { message: { app: { workspaceId: actor.workspaceId } } }
      : { recipientId: actor.recipientId };
  },
  /** A portal token sees the replays of its own recipient (its own, and an operator's of that recipient). */
  replay(actor: Actor): Prisma.ReplayWhereInput {
    return actor.kind === 'operator' ? { app: { workspaceId: actor.workspaceId } } : { recipientId: actor.recipientId };
  },
  portalSession(actor: Actor): Prisma.PortalSessionWhereInput {
    return actor.kind === 'operator' ? { app: { workspaceId: actor.workspaceId } } : NOTHING;
  },
};
