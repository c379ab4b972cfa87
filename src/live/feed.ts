import type pg from 'pg';
import type { Prisma, PrismaClient } from '../db/client.ts';
import type { Actor } from '../domain/actor.ts';
import {
  CREDENTIAL_RECHECK_MS,
  credentialEnded,
  credentialStatus,
  onCredentialsRevoked,
} from '../domain/credential-checks.ts';
import { DispatchError } from '../domain/errors.ts';
import { attemptAtEvent, type FeedScope, inScope } from '../domain/live-feed.ts';
import type { EndpointEvent, LiveBus } from './bus.ts';
import { decodeCursor, type Position } from './cursor.ts';
import {
  checkNotExpired,
  createLogTail,
  type LogEvent,
  type LogFilter,
  type LogKind,
  readCommitSnapshot,
  readRange,
} from './log.ts';
import { LogQueue } from './log-queue.ts';
import { liveEventsDelivered, liveEventsDropped, liveSubscribers, liveSubscriptionsInterrupted } from './metrics.ts';
import { SubscriberQueue } from './subscriber-queue.ts';

/**
 * The live feed as the API sees it: one per API process, over its bus.
 *
 * The pieces and who owns what:
 * - attemptUpdated, messageCreated and operationalEvent read the event log
 *   (log.ts: LiveEvent, written by triggers in the writing transaction) through
 *   one tail reader per process; each subscriber is a LogQueue (log-queue.ts),
 *   which resumes after a cursor and reads again from the log what it fell
 *   behind on, so nothing is lost;
 * - workers publish ids on the bus (bus.ts; pg-bus.ts over LISTEN/NOTIFY):
 *   for the log's feeds only a wake-up, for endpointHealthChanged the events;
 * - the domain settles what a subscriber may see (domain/live-feed.ts) and
 *   whether its credential is still live (domain/credential-checks.ts);
 * - this module queues each subscriber's events (subscriber-queue.ts), loads
 *   their rows in shared batches, and ends feeds whose credential ended;
 * - the GraphQL fields (graphql/types/subscriptions.ts) turn arguments and
 *   selection into a FeedRequest, and shared-execution.ts runs each item's
 *   selection once per credential and document.
 */
export interface LiveFeed {
  /** Attempts as they start and end (`SENDING`, then `SUCCEEDED` or `FAILED`). */
  attemptUpdated(request: FeedRequest<Prisma.AttemptWhereInput>): Promise<Feed>;
  /** New messages. */
  messageCreated(request: FeedRequest<Prisma.MessageWhereInput>): Promise<Feed>;
  /** Operational events: new messages of the workspace's operational app. */
  operationalEvent(request: FeedRequest<Prisma.MessageWhereInput>): Promise<Feed>;
  /** Endpoints whose health changed. */
  endpointHealthChanged(request: FeedRequest<Prisma.EndpointWhereInput>): Promise<Feed>;
}

export type FeedField = 'attemptUpdated' | 'messageCreated' | 'operationalEvent' | 'endpointHealthChanged';

/**
 * Ends the connection of a subscriber the feed ended: RATE_LIMITED (it
 * stopped reading and overflowed) or UNAUTHENTICATED (its key or session
 * ended), after its transport had a moment to send `reason`.
 */
export type CutOff = (reason: string, code?: 'RATE_LIMITED' | 'UNAUTHENTICATED') => void;

/** What a subscriber asks for. */
export interface FeedRequest<Where> {
  actor: Actor;
  /** What the subscriber may see and asked for; called once the feed can take subscribers (see feedReconnecting). */
  scope(): Promise<FeedScope<Where>>;
  /** The subscriber's selection as a Prisma query (`select` or `include`); `id` is always read besides. */
  selection: { select?: Record<string, unknown>; include?: object };
  /** Its transport's way to drop it (absent when nothing can be dropped). */
  cutOff?: CutOff;
  /**
   * Resume after this cursor (the `cursor` of the last event received): the
   * events after it are read from the event log first. Only on the feeds
   * with cursors (attemptUpdated, messageCreated, operationalEvent).
   */
  after?: string | null;
}

/**
 * A row as the subscriber's selection loaded it. Every subscriber of one
 * event under the same selection and visibility receives the same object:
 * shared-execution.ts keys its results on that identity.
 */
export type FeedRow = { id: string } & Record<string, unknown>;

/**
 * A subscription's source stream: rows, in the bus's order, and at most one
 * DispatchError, last (FEED_INTERRUPTED after the rows already queued;
 * RATE_LIMITED or UNAUTHENTICATED thrown when the feed is cut off).
 */
export type Feed = AsyncIterableIterator<FeedRow | DispatchError>;

/**
 * Events one subscriber holds in memory: beyond it, a log feed's subscriber
 * reads the rest again from the log (LogQueue); endpointHealthChanged's is
 * cut off (SubscriberQueue).
 */
export const SUBSCRIBER_BUFFER = 1000;

/** Ids per batched read. */
const BATCH_SIZE = 500;

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
      ids: Map<string, ((row: FeedRow | null) => void)[]>;
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
  ): Promise<FeedRow | null> {
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
      const reads: Promise<FeedRow[]>[] = [];
      for (let i = 0; i < ids.length; i += BATCH_SIZE) {
        const chunk = ids.slice(i, i + BATCH_SIZE);
        const args = { ...batch.args, where: { AND: [{ id: { in: chunk } }, batch.args.where] } };
        const delegate = this.prisma[batch.model] as unknown as { findMany(args: object): Promise<FeedRow[]> };
        reads.push(delegate.findMany(args));
      }
      Promise.all(reads).then(
        (results) => {
          const byId = new Map<string, FeedRow>();
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

/** Log events' loaded rows kept at most (the tail keeps many recent events; their rows are not kept with them). */
const LOADED_LOG_ROWS = 2000;
const loadedLog = new Map<string, Promise<unknown>>();
/**
 * loadedOnce for the event log's events: keyed by the event's cursor (the
 * same event read from the tail's memory or the database is one), in a
 * bounded map, oldest out first, so subscribers reading the same events
 * near one another share one payload object and memory stays bounded.
 */
function loadedOnceByCursor<R>(event: LogEvent, key: string, load: () => Promise<R>): Promise<R> {
  const id = `${event.cursor}\u0000${key}`;
  let value = loadedLog.get(id) as Promise<R> | undefined;
  if (!value) {
    value = load();
    loadedLog.set(id, value);
    value.catch(() => loadedLog.delete(id));
    if (loadedLog.size > LOADED_LOG_ROWS) loadedLog.delete(loadedLog.keys().next().value!);
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

/**
 * A feed lives no longer than its key or session: checked before each batch
 * of events is loaded (a cached check, see credentialStatus), at a portal
 * session's expiry, every CREDENTIAL_RECHECK_MS while no events come, and at
 * once when a key or session is revoked in this process.
 * Returns the check (false once ended) and the function that stops the timers.
 */
async function watchCredential(
  prisma: PrismaClient,
  actor: Actor,
  end: (error: DispatchError) => void,
): Promise<{ check(): Promise<boolean>; stop(): void }> {
  let ended = false;
  let expiry: NodeJS.Timeout | undefined;
  const check = async () => {
    if (ended) return false;
    const status = await credentialStatus(prisma, actor);
    if (status.live || ended) return !ended;
    ended = true;
    end(credentialEnded(actor));
    return false;
  };
  const { expiresAt } = await credentialStatus(prisma, actor);
  if (expiresAt) {
    // Portal sessions last at most 7 days, well inside setTimeout's range (24.8 days).
    expiry = setTimeout(() => void check(), Math.max(0, expiresAt.getTime() - Date.now()));
    expiry.unref();
  }
  const recheck = setInterval(() => void check(), CREDENTIAL_RECHECK_MS);
  recheck.unref();
  // A revocation in this process ends the feed at once rather than at the next recheck.
  const unlisten = onCredentialsRevoked(prisma, () => void check());
  return {
    check,
    stop() {
      clearTimeout(expiry);
      clearInterval(recheck);
      unlisten();
    },
  };
}

export interface LiveFeedOptions {
  bus: LiveBus;
  prisma: PrismaClient;
  /** Where the event log (LiveEvent) is read from. */
  pool: pg.Pool;
  /** Subscriptions one API key or portal session may have open here at once; more are RATE_LIMITED. */
  maxPerCredential: number;
}

const credentialOf = (actor: Actor) => (actor.kind === 'portal' ? actor.sessionId : actor.apiKeyId);

/** The live feed of one API process over `bus`. */
export function createLiveFeed(options: LiveFeedOptions): LiveFeed {
  const { bus, prisma, pool, maxPerCredential } = options;
  const batcher = new RowBatcher(prisma);
  /** This process's one reader of the event log, made when the first subscriber of a feed with cursors comes. */
  let tail: ReturnType<typeof createLogTail> | undefined;
  /** Open subscriptions per API key or portal session. */
  const openPerCredential = new Map<string, number>();

  /**
   * Counts a subscription against its credential's cap, or refuses it.
   * Returns the function that gives the place back (once, however it ends).
   */
  function hold(actor: Actor): () => void {
    const credential = credentialOf(actor);
    const held = openPerCredential.get(credential) ?? 0;
    if (held >= maxPerCredential) {
      throw new DispatchError(
        'RATE_LIMITED',
        `this ${actor.kind === 'portal' ? 'portal session' : 'API key'} already has ${maxPerCredential} live-feed subscriptions open on this server; end some before opening more`,
        { limit: maxPerCredential },
      );
    }
    openPerCredential.set(credential, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (openPerCredential.get(credential) ?? 1) - 1;
      if (left > 0) openPerCredential.set(credential, left);
      else openPerCredential.delete(credential);
    };
  }

  /** The feed's bus may not be taking events (reconnecting): refused at once, counted as interrupted. */
  function requireListening(field: FeedField) {
    if (bus.isListening) return;
    liveSubscriptionsInterrupted.inc({ field });
    throw feedReconnecting();
  }

  async function open<E extends EndpointEvent>(spec: {
    field: FeedField;
    model: Model;
    request: FeedRequest<object>;
    subscribe(listener: (event: E) => void): () => void;
    id(event: E): string;
    present(row: FeedRow, event: E): FeedRow;
  }): Promise<Feed> {
    requireListening(spec.field);
    const release = hold(spec.request.actor);
    try {
      return await openHeld(spec, release);
    } catch (error) {
      release();
      throw error;
    }
  }

  async function openHeld<E extends EndpointEvent>(
    spec: Parameters<typeof open<E>>[0],
    release: () => void,
  ): Promise<Feed> {
    const { field, model, request } = spec;
    const scope = await request.scope();
    const { selection, actor } = request;
    const query = selection.select ? { ...selection, select: { ...selection.select, id: true } } : selection;
    const args = { ...query, where: scope.where };
    const key = `${model}\u0000${JSON.stringify(args)}`;
    // Assigned right below; the watch only calls `end` once events or timers come.
    let queue: SubscriberQueue<E, FeedRow | DispatchError> | undefined;
    const credential = await watchCredential(prisma, actor, (error) => {
      queue?.end(error);
      request.cutOff?.(error.message, 'UNAUTHENTICATED');
    });
    let unwatch: (() => void) | undefined;
    liveSubscribers.inc({ field });
    const created = new SubscriberQueue<E, FeedRow | DispatchError>({
      capacity: SUBSCRIBER_BUFFER,
      subscribe: spec.subscribe,
      accept: (event) => inScope(scope, event),
      load: async (events) => {
        if (!(await credential.check())) return [];
        return Promise.all(
          events.map((event) =>
            loadedOnce(event, key, () =>
              batcher.load(key, model, args, spec.id(event)).then((row) => (row ? spec.present(row, event) : null)),
            ),
          ),
        );
      },
      overflowError: (capacity) =>
        new DispatchError(
          'RATE_LIMITED',
          `this subscriber fell more than ${capacity} events behind and was cut off; subscribe again (and read faster, or narrow the filter)`,
        ),
      onOverflow: (error) => request.cutOff?.(error.message),
      onDelivered: () => liveEventsDelivered.inc({ field }),
      onDropped: (count, reason) => liveEventsDropped.inc({ field, reason }, count),
      onEnd: () => {
        unwatch?.();
        credential.stop();
        liveSubscribers.dec({ field });
        release();
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

  /**
   * A feed with cursors: its events come from the event log through this
   * process's tail reader (log.ts), so a lost LISTEN connection or a
   * subscriber falling behind delays events but loses none, and `after`
   * resumes where a previous subscription stopped.
   */
  async function openLog(spec: {
    field: FeedField;
    model: 'attempt' | 'message';
    kind: LogKind;
    request: FeedRequest<object>;
    present(row: FeedRow, event: LogEvent): FeedRow;
  }): Promise<Feed> {
    const { field, model, request } = spec;
    // A cursor that is not one is refused before anything else is read.
    const after: Position | undefined = request.after != null ? decodeCursor(request.after) : undefined;
    const release = hold(request.actor);
    try {
      tail ??= createLogTail({ pool });
      try {
        await tail.ready();
      } catch {
        liveSubscriptionsInterrupted.inc({ field });
        throw feedReconnecting();
      }
      const scope = await request.scope();
      if (after) await checkNotExpired(pool, after);
      const { selection, actor } = request;
      const query = selection.select ? { ...selection, select: { ...selection.select, id: true } } : selection;
      const args = { ...query, where: scope.where };
      const key = `${model}\u0000${JSON.stringify(args)}`;
      const filter: LogFilter = {
        kind: spec.kind,
        appId: scope.appId,
        ...(scope.recipientId !== undefined ? { recipientId: scope.recipientId } : {}),
        ...(scope.messageId !== undefined ? { messageId: scope.messageId } : {}),
        ...(scope.endpointId !== undefined ? { endpointId: scope.endpointId } : {}),
      };
      let queue: LogQueue<FeedRow | DispatchError> | undefined;
      let unwake: (() => void) | undefined;
      const credential = await watchCredential(prisma, actor, (error) => {
        queue?.end(error);
        request.cutOff?.(error.message, 'UNAUTHENTICATED');
      });
      // From now: the transactions that have committed by now are not this subscription's (LogQueue's since).
      const since = after ? undefined : await readCommitSnapshot(pool);
      liveSubscribers.inc({ field });
      queue = new LogQueue<FeedRow | DispatchError>({
        tail,
        capacity: SUBSCRIBER_BUFFER,
        ...(after ? { after } : {}),
        ...(since ? { since } : {}),
        accept: (event) =>
          event.kind === spec.kind &&
          inScope(scope, { ...event, endpointId: spec.kind === 'attempt' ? event.endpointId : undefined }),
        readRange: (from, upTo, limit) => readRange(pool, from, upTo, filter, limit),
        load: async (events) => {
          if (!(await credential.check())) return [];
          return Promise.all(
            events.map((event) =>
              loadedOnceByCursor(event, key, () =>
                batcher.load(key, model, args, event.rowId).then((row) => (row ? spec.present(row, event) : null)),
              ),
            ),
          );
        },
        onDelivered: () => liveEventsDelivered.inc({ field }),
        onOverflow: (count) => liveEventsDropped.inc({ field, reason: 'overflow' }, count),
        onReadFailed: () => liveEventsDropped.inc({ field, reason: 'load_failed' }),
        onEnd: () => {
          unwake?.();
          credential.stop();
          liveSubscribers.dec({ field });
          release();
        },
      });
      // The bus's notifications of this kind wake the tail: one listener per subscription, so the bus counts them.
      const { wake: wakeTail } = tail;
      // A closure of its own: a bus may keep listeners in a Set.
      const wake = () => wakeTail();
      unwake = spec.kind === 'attempt' ? bus.subscribeAttempts(wake) : bus.subscribeMessages(wake);
      return queue;
    } catch (error) {
      release();
      throw error;
    }
  }

  const withCursor = (row: FeedRow, event: LogEvent): FeedRow => ({ ...row, cursor: event.cursor });

  return {
    attemptUpdated: (request) =>
      openLog({
        field: 'attemptUpdated',
        model: 'attempt',
        kind: 'attempt',
        request,
        present: (row, event) => withCursor(attemptAtEvent(row, event.status ?? 'SENDING'), event),
      }),
    messageCreated: (request) =>
      openLog({ field: 'messageCreated', model: 'message', kind: 'message', request, present: withCursor }),
    operationalEvent: (request) =>
      openLog({ field: 'operationalEvent', model: 'message', kind: 'message', request, present: withCursor }),
    endpointHealthChanged: (request) =>
      open<EndpointEvent>({
        field: 'endpointHealthChanged',
        model: 'endpoint',
        request,
        subscribe: (listener) => bus.subscribeEndpoints(listener),
        id: (event) => event.endpointId,
        present: (row) => ({ ...row }),
      }),
  };
}
