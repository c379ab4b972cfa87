import { queryFromInfo } from '@pothos/plugin-prisma';
import type { GraphQLResolveInfo } from 'graphql';
import type { PrismaClient } from '../../db/client.ts';
import { CREDENTIAL_RECHECK_MS, credentialEnded, credentialStatus } from '../../domain/credential-checks.ts';
import { endpointHealthFeedScope } from '../../domain/endpoint-health.ts';
import { DispatchError } from '../../domain/errors.ts';
import { attemptAtEvent, attemptFeedScope, type FeedScope, inScope, messageFeedScope } from '../../domain/live-feed.ts';
import { operationalFeedScope } from '../../domain/operational-events.ts';
import type { AttemptEvent, EndpointEvent, LiveBus, MessageEvent } from '../../live/bus.ts';
import {
  liveEventsDelivered,
  liveEventsDropped,
  liveSubscribers,
  liveSubscriptionsInterrupted,
} from '../../live/metrics.ts';
import { SubscriberQueue } from '../../live/subscriber-queue.ts';
import { builder } from '../builder.ts';
import type { GraphQLContext } from '../context.ts';
import { EndpointRef } from './endpoint.ts';
import { AttemptRef, MessageRef } from './message.ts';
import { OperationalEventRef } from './operational.ts';

/** Events one subscriber may fall behind before it is cut off (see SubscriberQueue). */
export const SUBSCRIBER_BUFFER = 1000;
/** Ids per batched read. */
const BATCH_SIZE = 500;

type Row = { id: string };
type Model = 'attempt' | 'message' | 'endpoint';

/**
 * Reads the rows of live events in batches: every subscriber asking the same
 * selection under the same visibility filter in the same tick shares one
 * findMany, so 50 subscribers of one app cost one query per batch of events,
 * not 50 per event.
 */
class RowBatcher {
  private pending = new Map<
    string,
    {
      model: Model;
      args: { where: object; select?: object; include?: object };
      ids: Map<string, ((row: Row | null) => void)[]>;
      fail: ((e: unknown) => void)[];
    }
  >();
  private scheduled = false;

  constructor(private readonly prisma: PrismaClient) {}

  load(
    key: string,
    model: Model,
    args: { where: object; select?: object; include?: object },
    id: string,
  ): Promise<Row | null> {
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(key);
      if (!batch) {
        batch = { model, args, ids: new Map(), fail: [] };
        this.pending.set(key, batch);
      }
      const waiting = batch.ids.get(id);
      if (waiting) waiting.push(resolve);
      else batch.ids.set(id, [resolve]);
      batch.fail.push(reject);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush() {
    this.scheduled = false;
    const batches = [...this.pending.values()];
    this.pending.clear();
    for (const batch of batches) {
      const ids = [...batch.ids.keys()];
      const reads: Promise<Row[]>[] = [];
      for (let i = 0; i < ids.length; i += BATCH_SIZE) {
        const chunk = ids.slice(i, i + BATCH_SIZE);
        const args = { ...batch.args, where: { AND: [{ id: { in: chunk } }, batch.args.where] } };
        const delegate = this.prisma[batch.model] as unknown as { findMany(args: object): Promise<Row[]> };
        reads.push(delegate.findMany(args));
      }
      Promise.all(reads).then(
        (results) => {
          const byId = new Map<string, Row>();
          for (const rows of results) for (const row of rows) byId.set(row.id, row);
          for (const [id, waiting] of batch.ids) for (const resolve of waiting) resolve(byId.get(id) ?? null);
        },
        (error) => {
          for (const reject of batch.fail) reject(error);
        },
      );
    }
  }
}

const batchers = new WeakMap<PrismaClient, RowBatcher>();
function batcherFor(prisma: PrismaClient): RowBatcher {
  let batcher = batchers.get(prisma);
  if (!batcher) {
    batcher = new RowBatcher(prisma);
    batchers.set(prisma, batcher);
  }
  return batcher;
}

/** A feed's row, or the error that ends it (see feedInterrupted). */
const resolveFeedItem = (item: object) => {
  if (item instanceof DispatchError) throw item;
  return item as never;
};

/**
 * What an event became under one selection and visibility filter (`key`),
 * loaded by the first subscriber to pull it and handed as the same object to
 * every other: the bus gives all subscribers one event object, and one
 * payload object per event lets their selection run once (see
 * shared-execution.ts). Kept on the event, so it lives as long as the event
 * is queued somewhere; a failed load is not kept.
 */
const loaded = new WeakMap<object, Map<string, Promise<unknown>>>();
function loadedOnce<R>(event: object, key: string, load: () => Promise<R>): Promise<R> {
  let byKey = loaded.get(event);
  if (!byKey) {
    byKey = new Map();
    loaded.set(event, byKey);
  }
  let value = byKey.get(key) as Promise<R> | undefined;
  if (!value) {
    value = load();
    byKey.set(key, value);
    value.catch(() => byKey.delete(key));
  }
  return value;
}

/**
 * The last result of a subscription that may have missed events: the bus
 * lost its connection, so whatever was published until it is back never
 * reaches this process. Ending the subscription with an error (a result with
 * errors, then complete; the socket stays open) is what every GraphQL client
 * surfaces; carrying on silently would leave a feed that looks complete.
 */
const feedInterrupted = () =>
  new DispatchError(
    'FEED_INTERRUPTED',
    'the live feed was interrupted and events may have been missed: subscribe again, then re-read with queries what changed meanwhile',
  );

/**
 * A subscription made while the bus is reconnecting fails at once rather than
 * wait: a client re-reads once its subscription is accepted, so one accepted
 * before events flow again would silently miss what happens until then.
 */
const feedReconnecting = () =>
  new DispatchError(
    'FEED_INTERRUPTED',
    'the live feed is reconnecting and cannot receive events yet: subscribe again shortly (with backoff)',
  );

function requireBus(ctx: GraphQLContext, field: string): LiveBus {
  // Every API process is started with a bus; a schema executed without one has no feed to offer.
  if (!ctx.live) throw new Error('the live feed is not configured in this process');
  if (!ctx.live.isListening) {
    liveSubscriptionsInterrupted.inc({ field });
    throw feedReconnecting();
  }
  return ctx.live;
}

/**
 * The selection the subscriber asked for, as a Prisma query, with `id` always
 * read so batched rows can be matched to their events.
 */
function selectionOf(ctx: GraphQLContext, info: GraphQLResolveInfo): { select?: object; include?: object } {
  const query = queryFromInfo({ context: ctx, info }) as { select?: Record<string, unknown>; include?: object };
  return query.select ? { ...query, select: { ...query.select, id: true } } : query;
}

/**
 * A feed lives no longer than its key or session: checked before each batch
 * of events is loaded (a cached check, see credentialStatus), at a portal
 * session's expiry, and every CREDENTIAL_RECHECK_MS while no events come.
 * Returns the check (false once ended) and the function that stops the timers.
 */
async function watchCredential(
  ctx: GraphQLContext,
  end: (error: DispatchError) => void,
): Promise<{ check(): Promise<boolean>; stop(): void }> {
  const { prisma } = ctx.domain;
  let ended = false;
  let expiry: NodeJS.Timeout | undefined;
  const check = async () => {
    if (ended) return false;
    const status = await credentialStatus(prisma, ctx.actor);
    if (status.live || ended) return !ended;
    ended = true;
    end(credentialEnded(ctx.actor));
    return false;
  };
  const { expiresAt } = await credentialStatus(prisma, ctx.actor);
  if (expiresAt) {
    // Portal sessions last at most 7 days, well inside setTimeout's range (24.8 days).
    expiry = setTimeout(() => void check(), Math.max(0, expiresAt.getTime() - Date.now()));
    expiry.unref();
  }
  const recheck = setInterval(() => void check(), CREDENTIAL_RECHECK_MS);
  recheck.unref();
  return {
    check,
    stop() {
      clearTimeout(expiry);
      clearInterval(recheck);
    },
  };
}

async function feed<
  E extends { appId: string; recipientId: string; messageId?: string; endpointId?: string },
  R,
>(options: {
  field: string;
  ctx: GraphQLContext;
  info: GraphQLResolveInfo;
  model: Model;
  scope: FeedScope<object>;
  bus: LiveBus;
  subscribe(listener: (event: E) => void): () => void;
  id(event: E): string;
  present(row: Row, event: E): R;
}) {
  const { field, ctx, scope, model, bus } = options;
  const query = selectionOf(ctx, options.info);
  const args = { ...query, where: scope.where };
  const key = `${model}\u0000${JSON.stringify(args)}`;
  const batcher = batcherFor(ctx.domain.prisma);
  // Assigned right below; the watch only calls `end` once events or timers come.
  let queue: SubscriberQueue<E, R | DispatchError> | undefined;
  const credential = await watchCredential(ctx, (error) => {
    queue?.end(error);
    ctx.cutOff?.(error.message, 'UNAUTHENTICATED');
  });
  let unwatch: (() => void) | undefined;
  liveSubscribers.inc({ field });
  const created = new SubscriberQueue<E, R | DispatchError>({
    capacity: SUBSCRIBER_BUFFER,
    subscribe: options.subscribe,
    accept: (event) => inScope(scope, event),
    load: async (events) => {
      if (!(await credential.check())) return [];
      return Promise.all(
        events.map((event) =>
          loadedOnce(event, key, () =>
            batcher.load(key, model, args, options.id(event)).then((row) => (row ? options.present(row, event) : null)),
          ),
        ),
      );
    },
    overflowError: (capacity) =>
      new DispatchError(
        'RATE_LIMITED',
        `this subscriber fell more than ${capacity} events behind and was cut off; subscribe again (and read faster, or narrow the filter)`,
      ),
    onOverflow: (error) => ctx.cutOff?.(error.message),
    onDelivered: () => liveEventsDelivered.inc({ field }),
    onDropped: (count, reason) => liveEventsDropped.inc({ field, reason }, count),
    onEnd: () => {
      unwatch?.();
      credential.stop();
      liveSubscribers.dec({ field });
    },
  });
  queue = created;
  let interrupted = false;
  const interrupt = () => {
    if (interrupted) return;
    interrupted = true;
    liveSubscriptionsInterrupted.inc({ field });
    created.interrupt(feedInterrupted());
  };
  unwatch = bus.subscribeInterruptions(interrupt);
  // The bus may have gone down while this subscription was being set up, before it could be told.
  if (!bus.isListening) interrupt();
  return created;
}

builder.subscriptionFields((t) => ({
  attemptUpdated: t.field({
    type: AttemptRef,
    description:
      'Each attempt of the app when it starts (status SENDING) and when it ends (SUCCEEDED or FAILED), within a second, whichever process made it. ' +
      "Narrowed by recipient (the operator's id), message (msg_… or the caller's messageId) and endpoint. " +
      "A portal token only receives its own recipient's attempts. A subscriber more than 1000 events behind is cut off with RATE_LIMITED; one whose API key or portal session ends, with UNAUTHENTICATED. " +
      'When events may have been missed (this API process lost its connection to the event bus), it ends with FEED_INTERRUPTED: subscribe again, then re-read with queries.',
    args: {
      appId: t.arg.id({ required: true }),
      recipientId: t.arg.string(),
      messageId: t.arg.id(),
      endpointId: t.arg.id(),
    },
    subscribe: async (_root, args, ctx, info) => {
      const bus = requireBus(ctx, 'attemptUpdated');
      const scope = await attemptFeedScope(ctx.domain, args);
      return feed<AttemptEvent, object>({
        field: 'attemptUpdated',
        ctx,
        info,
        model: 'attempt',
        scope,
        bus,
        subscribe: (listener) => bus.subscribeAttempts(listener),
        id: (event) => event.attemptId,
        present: (row, event) => attemptAtEvent(row, event.status),
      });
    },
    resolve: resolveFeedItem,
  }),
  messageCreated: t.field({
    type: MessageRef,
    description:
      'Each new message of the app (deduplicated sends are not new), including messages no endpoint receives. ' +
      "A portal token only receives its own recipient's messages. A subscriber more than 1000 events behind is cut off with RATE_LIMITED; one whose API key or portal session ends, with UNAUTHENTICATED. " +
      'When events may have been missed (this API process lost its connection to the event bus), it ends with FEED_INTERRUPTED: subscribe again, then re-read with queries.',
    args: {
      appId: t.arg.id({ required: true }),
      recipientId: t.arg.string(),
    },
    subscribe: async (_root, args, ctx, info) => {
      const bus = requireBus(ctx, 'messageCreated');
      const scope = await messageFeedScope(ctx.domain, args);
      return feed<MessageEvent, object>({
        field: 'messageCreated',
        ctx,
        info,
        model: 'message',
        scope,
        bus,
        subscribe: (listener) => bus.subscribeMessages(listener),
        id: (event) => event.messageId,
        present: (row) => ({ ...row }),
      });
    },
    resolve: resolveFeedItem,
  }),
  operationalEvent: t.field({
    type: OperationalEventRef,
    authScopes: { operator: true },
    description:
      "Dispatch's operational events of this workspace (endpoint.disabled, endpoint.failing, message.attempt.exhausted, …), each once it is committed, optionally only some types. API keys only; needs operational events on (enableOperationalEvents). " +
      "The same events reach the operational app's endpoints as signed webhooks. Ends like the other feeds (RATE_LIMITED, UNAUTHENTICATED, FEED_INTERRUPTED).",
    args: { types: t.arg.stringList({ description: 'Only these types; all when absent.' }) },
    subscribe: async (_root, args, ctx, info) => {
      const bus = requireBus(ctx, 'operationalEvent');
      const scope = await operationalFeedScope(ctx.domain, args);
      return feed<MessageEvent, object>({
        field: 'operationalEvent',
        ctx,
        info,
        model: 'message',
        scope,
        bus,
        subscribe: (listener) => bus.subscribeMessages(listener),
        id: (event) => event.messageId,
        present: (row) => ({ ...row }),
      });
    },
    resolve: resolveFeedItem,
  }),
  endpointHealthChanged: t.field({
    type: EndpointRef,
    nullable: false,
    description:
      "Each endpoint of the app whose health (Endpoint.health) changes: disabled or enabled, or a run of failures starting or ending; optionally one recipient's (the operator's id). " +
      'Select health to read it as it is when the event reaches you. A portal token only receives its own endpoints. Ends like the other feeds (RATE_LIMITED, UNAUTHENTICATED, FEED_INTERRUPTED).',
    args: { appId: t.arg.id({ required: true }), recipientId: t.arg.string() },
    subscribe: async (_root, args, ctx, info) => {
      const bus = requireBus(ctx, 'endpointHealthChanged');
      const scope = await endpointHealthFeedScope(ctx.domain, args);
      return feed<EndpointEvent, object>({
        field: 'endpointHealthChanged',
        ctx,
        info,
        model: 'endpoint',
        scope,
        bus,
        subscribe: (listener) => bus.subscribeEndpoints(listener),
        id: (event) => event.endpointId,
        present: (row) => ({ ...row }),
      });
    },
    resolve: resolveFeedItem,
  }),
}));
