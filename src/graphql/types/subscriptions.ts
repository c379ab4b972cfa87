import { queryFromInfo } from '@pothos/plugin-prisma';
import type { GraphQLResolveInfo } from 'graphql';
import { endpointHealthFeedScope } from '../../domain/endpoint-health.ts';
import { DispatchError } from '../../domain/errors.ts';
import { attemptFeedScope, type FeedScope, messageFeedScope } from '../../domain/live-feed.ts';
import { operationalFeedScope } from '../../domain/operational-events.ts';
import { type FeedRequest, type FeedRow, SUBSCRIBER_BUFFER } from '../../live/feed.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { EndpointRef } from './endpoint.ts';
import { AttemptRef, MessageRef } from './message.ts';
import { OperationalEventRef } from './operational.ts';

/** What a subscriber asks of the live feed: its credential, scope and selection (as a Prisma query). */
function feedRequest<Where>(
  ctx: GraphQLContext,
  info: GraphQLResolveInfo,
  scope: () => Promise<FeedScope<Where>>,
  after?: string | null,
): FeedRequest<Where> {
  const selection = queryFromInfo({ context: ctx, info }) as { select?: Record<string, unknown>; include?: object };
  return { actor: ctx.actor, scope, selection, cutOff: ctx.cutOff, after };
}

/** A feed's row, or the error that ends it (FEED_INTERRUPTED). */
const resolveFeedItem = (item: FeedRow | DispatchError) => {
  if (item instanceof DispatchError) throw item;
  return item as never;
};

const cutOffs =
  `A subscriber more than ${SUBSCRIBER_BUFFER} events behind is cut off with RATE_LIMITED; one whose API key or portal session ends, with UNAUTHENTICATED. ` +
  'When events may have been missed (this API process lost its connection to the event bus), it ends with FEED_INTERRUPTED: subscribe again, then re-read with queries.';

const resumable =
  'Each event carries its cursor; `after` resumes after one: the events after it are read from the event log first, then the feed goes on live, ' +
  'with no gap and no duplicate, in the one order every subscriber sees. A cursor older than retention answers CURSOR_EXPIRED. ' +
  `A subscriber more than ${SUBSCRIBER_BUFFER} events behind loses none: they are read again from the log as it reads (memory per subscriber stays bounded). ` +
  'A lost connection to the database delays events and loses none. One whose API key or portal session ends is ended with UNAUTHENTICATED.';

const AFTER = 'Resume after this cursor (the cursor of the last event received); absent: from now on.';

builder.subscriptionFields((t) => ({
  attemptUpdated: t.field({
    type: AttemptRef,
    description:
      'Each attempt of the app when it starts (status SENDING) and when it ends (SUCCEEDED or FAILED), within a second, whichever process made it. ' +
      "Narrowed by recipient (the operator's id), message (msg_… or the caller's messageId) and endpoint. " +
      "A portal token only receives its own recipient's attempts. " +
      resumable,
    args: {
      appId: t.arg.id({ required: true }),
      recipientId: t.arg.string(),
      messageId: t.arg.id(),
      endpointId: t.arg.id(),
      after: t.arg({ type: 'Cursor', description: AFTER }),
    },
    subscribe: (_root, args, ctx, info) =>
      ctx.live.attemptUpdated(
        feedRequest(
          ctx,
          info,
          () => attemptFeedScope(ctx.domain, { ...args, recipientUid: args.recipientId }),
          args.after,
        ),
      ),
    resolve: resolveFeedItem,
  }),
  messageCreated: t.field({
    type: MessageRef,
    description:
      'Each new message of the app (deduplicated sends are not new), including messages no endpoint receives. ' +
      "A portal token only receives its own recipient's messages. " +
      resumable,
    args: {
      appId: t.arg.id({ required: true }),
      recipientId: t.arg.string(),
      after: t.arg({ type: 'Cursor', description: AFTER }),
    },
    subscribe: (_root, args, ctx, info) =>
      ctx.live.messageCreated(
        feedRequest(
          ctx,
          info,
          () => messageFeedScope(ctx.domain, { ...args, recipientUid: args.recipientId }),
          args.after,
        ),
      ),
    resolve: resolveFeedItem,
  }),
  operationalEvent: t.field({
    type: OperationalEventRef,
    authScopes: { operator: true },
    description:
      "Dispatch's operational events of this workspace (endpoint.disabled, endpoint.failing, message.attempt.exhausted, …), each once it is committed, optionally only some types. API keys only; needs operational events on (enableOperationalEvents). " +
      "The same events reach the operational app's endpoints as signed webhooks. " +
      'Events are read from the event log: a lost connection to the database or a subscriber falling behind delays them and loses none.',
    args: { types: t.arg.stringList({ description: 'Only these types; all when absent.' }) },
    subscribe: (_root, args, ctx, info) =>
      ctx.live.operationalEvent(feedRequest(ctx, info, () => operationalFeedScope(ctx.domain, args))),
    resolve: resolveFeedItem,
  }),
  endpointHealthChanged: t.field({
    type: EndpointRef,
    nullable: false,
    description:
      "Each endpoint of the app whose health (Endpoint.health) changes: disabled or enabled, or a run of failures starting or ending; optionally one recipient's (the operator's id). " +
      'Select health to read it as it is when the event reaches you. A portal token only receives its own endpoints. ' +
      cutOffs,
    args: { appId: t.arg.id({ required: true }), recipientId: t.arg.string() },
    subscribe: (_root, args, ctx, info) =>
      ctx.live.endpointHealthChanged(
        feedRequest(ctx, info, () => endpointHealthFeedScope(ctx.domain, { ...args, recipientUid: args.recipientId })),
      ),
    resolve: resolveFeedItem,
  }),
}));
