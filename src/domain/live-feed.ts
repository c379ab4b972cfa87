import type { Prisma } from '../db/client.ts';
import { visible } from './access.ts';
import { requireApp } from './apps.ts';
import type { DomainContext, SqlExecutor } from './context.ts';
import { notFound } from './errors.ts';
import { messageNamed } from './messages.ts';
import { checkExternalId } from './recipients.ts';

/** The NOTIFY channel of the live feed (src/live/pg-bus.ts listens on it). */
export const LIVE_CHANNEL = 'dispatch_live';

/**
 * Announces a new message on the live feed from inside a transaction:
 * PostgreSQL sends a NOTIFY when the transaction commits, and never when it
 * rolls back. The payload is the bus's wire form of a message event.
 */
export async function notifyMessageCreated(
  sql: SqlExecutor,
  event: { messageId: string; appId: string; recipientId: string },
): Promise<void> {
  await sql.query('SELECT pg_notify($1, $2)', [LIVE_CHANNEL, JSON.stringify({ kind: 'message', ...event })]);
}

/**
 * What a live-feed subscription watches, settled once at subscribe time:
 * internal ids an event must carry (checked in memory for every event, so
 * events of other apps and recipients cost nothing) and the filter the
 * event's row is loaded with (the actor's visibility always, plus what
 * could not be settled yet: a recipient or message that does not exist yet
 * may be created later, so it is matched by its external id on load).
 */
export interface FeedScope<Where> {
  appId: string;
  recipientId?: string;
  messageId?: string;
  endpointId?: string;
  where: Where;
}

/** The ids a bus event carries; internal ids throughout. */
export interface FeedEventIds {
  appId: string;
  recipientId: string;
  messageId?: string;
  endpointId?: string;
}

export function inScope(scope: FeedScope<unknown>, event: FeedEventIds): boolean {
  return (
    event.appId === scope.appId &&
    (scope.recipientId === undefined || event.recipientId === scope.recipientId) &&
    (scope.messageId === undefined || event.messageId === scope.messageId) &&
    (scope.endpointId === undefined || event.endpointId === scope.endpointId)
  );
}

/**
 * The recipient part of a scope. A portal token is always confined to its own
 * recipient, asked or not; asking for another one answers like a missing one.
 * An operator may watch a recipient that has no message yet.
 */
export async function recipientScope(ctx: DomainContext, appId: string, recipientUid: string | null | undefined) {
  const { actor } = ctx;
  if (actor.kind === 'portal') {
    if (recipientUid != null && recipientUid !== actor.recipientUid) throw notFound('recipient');
    return { recipientId: actor.recipientId, pendingUid: undefined };
  }
  if (recipientUid == null) return { recipientId: undefined, pendingUid: undefined };
  checkExternalId(recipientUid, 'recipientId');
  const recipient = await ctx.prisma.recipient.findFirst({
    where: { appId, uid: recipientUid, AND: [visible.recipient(actor)] },
    select: { id: true },
  });
  return recipient
    ? { recipientId: recipient.id, pendingUid: undefined }
    : { recipientId: undefined, pendingUid: recipientUid };
}

/** Scope of `attemptUpdated`: the app must be visible (NOT_FOUND otherwise), and so must a named endpoint. */
export async function attemptFeedScope(
  ctx: DomainContext,
  /** recipientUid: the caller's id of the recipient; messageId: a msg_… id or the caller's messageId. */
  args: { appId: string; recipientUid?: string | null; messageId?: string | null; endpointId?: string | null },
): Promise<FeedScope<Prisma.AttemptWhereInput>> {
  const app = await requireApp(ctx, args.appId);
  const recipient = await recipientScope(ctx, app.id, args.recipientUid);
  const where: Prisma.AttemptWhereInput[] = [visible.attempt(ctx.actor)];
  if (recipient.pendingUid !== undefined) where.push({ recipient: { uid: recipient.pendingUid } });

  let endpointId: string | undefined;
  if (args.endpointId != null) {
    const endpoint = await ctx.prisma.endpoint.findFirst({
      where: { id: args.endpointId, appId: app.id, AND: [visible.endpoint(ctx.actor)] },
      select: { id: true },
    });
    if (!endpoint) throw notFound('endpoint');
    endpointId = endpoint.id;
  }

  // A message id (msg_…) or the caller's messageId; one not sent yet is matched when it is.
  let messageId: string | undefined;
  if (args.messageId != null) {
    checkExternalId(args.messageId, 'messageId');
    const message = await ctx.prisma.message.findFirst({
      where: { AND: [messageNamed(app.id, args.messageId), visible.message(ctx.actor)] },
      select: { id: true },
      orderBy: { id: 'asc' },
    });
    if (message) messageId = message.id;
    else where.push({ message: messageNamed(app.id, args.messageId) });
  }

  return { appId: app.id, recipientId: recipient.recipientId, messageId, endpointId, where: { AND: where } };
}

/** Scope of `messageCreated`: the app must be visible (NOT_FOUND otherwise). */
export async function messageFeedScope(
  ctx: DomainContext,
  args: { appId: string; recipientUid?: string | null },
): Promise<FeedScope<Prisma.MessageWhereInput>> {
  const app = await requireApp(ctx, args.appId);
  const recipient = await recipientScope(ctx, app.id, args.recipientUid);
  const where: Prisma.MessageWhereInput[] = [visible.message(ctx.actor)];
  if (recipient.pendingUid !== undefined) where.push({ recipient: { uid: recipient.pendingUid } });
  return { appId: app.id, recipientId: recipient.recipientId, where: { AND: where } };
}

/** Fields an attempt only has once it has finished. */
const OUTCOME_FIELDS = [
  'responseStatusCode',
  'responseBody',
  'durationMs',
  'error',
  'errorKind',
  'finishedAt',
] as const;

/**
 * An attempt as it was at its event. The row is read when the subscriber
 * pulls the event, and a fast endpoint may have answered by then; the feed
 * still shows the start as SENDING, with no outcome, and the end separately.
 */
export function attemptAtEvent<T extends object>(row: T, status: 'SENDING' | 'SUCCEEDED' | 'FAILED'): T {
  const copy = { ...row } as Record<string, unknown>;
  if (status === 'SENDING') {
    if ('status' in copy) copy.status = 'SENDING';
    for (const field of OUTCOME_FIELDS) if (field in copy) copy[field] = null;
  }
  return copy as T;
}
