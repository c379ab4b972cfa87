import { createHash, hash } from 'node:crypto';
import type { Span } from '@opentelemetry/api';
import type pg from 'pg';
import type { Message, Prisma } from '../db/client.ts';
import { createGroupCommit } from '../db/group-commit.ts';
import { currentTraceparent, traced, tracingOn } from '../tracing.ts';
import { visible } from './access.ts';
import { requireOperator } from './apps.ts';
import { canonicalJson } from './canonical-json.ts';
import {
  type DeliveryHooks,
  type DomainContext,
  inTransaction,
  type NewDelivery,
  type SqlExecutor,
} from './context.ts';
import { badInput, DispatchError, forbidden, notFound } from './errors.ts';
import { checkEventTypeName } from './event-types.ts';
import { newId } from './ids.ts';
import { exampleOf } from './json-schema.ts';
import { checkExternalId } from './recipients.ts';
import { validateAgainstSchema } from './schema-validation.ts';

export { canonicalJson };

export function hashData(data: unknown): string {
  return hash('sha256', canonicalJson(data), 'hex');
}

/**
 * A message to send. Ids the caller chose are named `…Uid` (the GraphQL
 * input calls them `recipientId` and `messageId`); `…Id` is always Dispatch's.
 */
export interface SendMessageInput {
  appId: string;
  recipientUid: string;
  eventType: string;
  data?: unknown;
  messageUid?: string | null;
  /** The same as messageUid under the name other services use. */
  idempotencyKey?: string | null;
  /** A scheduled send: no try before this time; in the past means now; at most MAX_SCHEDULE_AHEAD_SECONDS ahead. */
  deliverAt?: Date | null;
}

/** How far ahead a message may be scheduled (deliverAt): 30 days. */
export const MAX_SCHEDULE_AHEAD_SECONDS = 30 * 24 * 3600;

/**
 * The deliverAt to store: null when none was given, now when it is past,
 * DELIVER_AT_TOO_LATE beyond MAX_SCHEDULE_AHEAD_SECONDS.
 */
export function deliverAtOf(given: Date | null | undefined, now = new Date()): Date | null {
  if (given == null) return null;
  if (Number.isNaN(given.getTime())) throw badInput('deliverAt must be a valid time');
  const latest = now.getTime() + MAX_SCHEDULE_AHEAD_SECONDS * 1000;
  if (given.getTime() > latest) {
    throw new DispatchError(
      'DELIVER_AT_TOO_LATE',
      `deliverAt may be at most ${MAX_SCHEDULE_AHEAD_SECONDS / 86_400} days ahead (until ${new Date(latest).toISOString()})`,
      { latest: new Date(latest).toISOString(), maxSeconds: MAX_SCHEDULE_AHEAD_SECONDS },
    );
  }
  return given.getTime() > now.getTime() ? given : now;
}

export interface SendMessageResult {
  message: Message;
  deduplicated: boolean;
  deliveries: NewDelivery[];
}

interface StoredMessageRow extends Message {
  recipientUid: string;
}

async function findByUid(sql: SqlExecutor, appId: string, uid: string): Promise<StoredMessageRow | undefined> {
  const { rows } = await sql.query<StoredMessageRow>(
    `SELECT m.*, r.uid AS "recipientUid" FROM "Message" m JOIN "Recipient" r ON r.id = m."recipientId"
     WHERE m."appId" = $1 AND m.uid = $2`,
    [appId, uid],
  );
  return rows[0];
}

function stripRecipientUid(row: StoredMessageRow): Message {
  const { recipientUid: _, ...message } = row;
  return message;
}

function duplicateOrConflict(existing: StoredMessageRow, input: SendMessageInput, dataHash: string): SendMessageResult {
  if (
    existing.recipientUid !== input.recipientUid ||
    existing.eventType !== input.eventType ||
    existing.dataHash !== dataHash
  ) {
    throw new DispatchError(
      'IDEMPOTENCY_CONFLICT',
      `message ${existing.uid} was already sent with a different recipient, event type or data`,
      { messageId: existing.uid },
    );
  }
  return { message: stripRecipientUid(existing), deduplicated: true, deliveries: [] };
}

/**
 * Stores a message and one delivery per enabled endpoint of its recipient
 * whose filter matches, in one transaction with the first try of each (the
 * queue's jobs, asked for through `ctx.hooks.deliveriesCreated`): once this
 * returns, the message cannot be lost, and `ctx.hooks.deliveriesCommitted`
 * wakes the workers. The same id with the same content deduplicates; with other
 * content it is IDEMPOTENCY_CONFLICT.
 */
export async function sendMessage(ctx: DomainContext, input: SendMessageInput): Promise<SendMessageResult> {
  const operator = requireOperator(ctx);
  return send(ctx, operator.workspaceId, input, { test: false, endpointId: null });
}

/** A send stores its message at most this many times while its event type or endpoints change under it. */
const SEND_ROUNDS = 4;

/** How a message is sent besides its content: a test (sendTestMessage) and, for one, to one endpoint only. */
interface SendMode {
  test: boolean;
  endpointId: string | null;
}

async function send(
  ctx: DomainContext,
  workspaceId: string,
  input: SendMessageInput,
  mode: SendMode,
): Promise<SendMessageResult> {
  if (input.messageUid != null && input.idempotencyKey != null && input.messageUid !== input.idempotencyKey) {
    throw badInput('messageId and idempotencyKey are the same thing under two names; give one, or both equal');
  }
  const givenUid = input.messageUid ?? input.idempotencyKey ?? null;
  if (givenUid !== null) checkExternalId(givenUid, 'messageId');
  checkExternalId(input.recipientUid, 'recipientId');
  checkEventTypeName(input.eventType);
  if (input.data === undefined) throw badInput('data is required');
  const deliverAt = deliverAtOf(input.deliverAt);
  const serialized = JSON.stringify(input.data);
  const size = Buffer.byteLength(serialized);
  if (size > ctx.settings.maxPayloadBytes) {
    throw new DispatchError(
      'PAYLOAD_TOO_LARGE',
      `data is ${size} bytes; the limit is ${ctx.settings.maxPayloadBytes}`,
      {
        size,
        limit: ctx.settings.maxPayloadBytes,
      },
    );
  }

  let known = knownEventTypes.get(eventTypeKey(workspaceId, input));
  known ??= await lookupEventType(ctx, workspaceId, input);
  await checkPayload(workspaceId, known, serialized, input.eventType);
  const dataHash = hashData(input.data);
  const id = newId('Message');
  const uid = givenUid ?? id;

  let deliveryIds = GUESSED_DELIVERIES;
  // Tries are sent later, by any worker: their spans continue this request's trace.
  const traceparent = currentTraceparent();
  for (let round = 0; ; round++) {
    if (round === SEND_ROUNDS)
      // Something it depends on changed under each of its tries: answered
      // like a database that is unavailable for a moment, since the client
      // does the same (sends again, with the same messageId).
      throw new DispatchError(
        'SERVICE_UNAVAILABLE',
        `the event type ${input.eventType} or the recipient's endpoints changed while the message was being stored, ${round} times in a row; nothing was stored: send it again`,
      );
    const stored = await storeMessage(ctx, {
      workspaceId,
      known,
      input,
      mode,
      message: { id, uid, serialized, dataHash, deliverAt },
      deliveryIdCount: deliveryIds,
      traceparent,
    });
    if (!stored.eventTypeOk) {
      // The event type changed since it was cached (archived, created again
      // with another schema, its app gone): look again; that throws when it
      // is no longer usable.
      knownEventTypes.delete(eventTypeKey(workspaceId, input));
      known = await lookupEventType(ctx, workspaceId, input);
      await checkPayload(workspaceId, known, serialized, input.eventType);
      continue;
    }
    if (!stored.message && stored.endpointCount > deliveryIds) {
      deliveryIds = stored.endpointCount;
      continue;
    }
    if (!stored.message) {
      // The id is taken: sent before, or by a request that committed first.
      const existing = await findByUid(ctx.pool, input.appId, uid);
      if (!existing) throw new Error(`message ${uid} conflicted on insert but cannot be read`);
      return duplicateOrConflict(existing, input, dataHash);
    }
    const { message } = stored;
    const deliveries = deliveriesOf([stored]);
    if (deliveries.length) ctx.hooks.deliveriesCommitted?.();
    ctx.events?.messageCreated({ messageId: message.id, appId: message.appId, recipientId: message.recipientId });
    return { message, deduplicated: false, deliveries };
  }
}

/** An event type known to exist and be active, as sendMessage caches it. */
interface KnownEventType {
  eventTypeId: string;
  schema: object | null;
  /** The schema as sent back to PostgreSQL, which checks it is still the stored one. */
  schemaText: string | null;
  /** The compiled validator's cache key: the event type and its schema's version. */
  validatorKey: string;
}

/**
 * Event types sendMessage found active, per workspace, app and name, so a
 * send takes one round trip. A cached entry is a hint, never trusted: the
 * statement that stores the message checks, in the same snapshot, that the
 * event type is still active in an app of this workspace with this schema,
 * and writes nothing otherwise.
 */
const knownEventTypes = new Map<string, KnownEventType>();
const MAX_KNOWN_EVENT_TYPES = 10_000;
/** Delivery ids made ready per send; a recipient with more matching endpoints costs a second round. */
const GUESSED_DELIVERIES = 4;

const eventTypeKey = (workspaceId: string, input: SendMessageInput) =>
  `${workspaceId}\u0000${input.appId}\u0000${input.eventType}`;

/** The app (NOT_FOUND) and its active event type (UNKNOWN_EVENT_TYPE), looked up and cached. */
async function lookupEventType(
  ctx: DomainContext,
  workspaceId: string,
  input: SendMessageInput,
): Promise<KnownEventType> {
  const { rows } = await ctx.pool.query<{
    eventTypeId: string | null;
    schema: object | null;
    schemaText: string | null;
    archivedAt: Date | null;
  }>({
    name: 'dispatch_send_lookup',
    // The schema's text as PostgreSQL prints it: sent back to check it is still the stored one, it
    // compares equal (JSON.stringify of the parsed value need not: numbers beyond a double's precision).
    text: `SELECT et.id AS "eventTypeId", et.schema, et.schema::text AS "schemaText", et."archivedAt"
     FROM "App" a LEFT JOIN "EventType" et ON et."appId" = a.id AND et.name = $2
     WHERE a.id = $1 AND a."workspaceId" = $3`,
    values: [input.appId, input.eventType, workspaceId],
  });
  const found = rows[0];
  if (!found) throw notFound('app');
  if (!found.eventTypeId || found.archivedAt) {
    throw new DispatchError(
      'UNKNOWN_EVENT_TYPE',
      `event type ${input.eventType} does not exist${found.archivedAt ? ' (it is archived)' : ''}`,
    );
  }
  const schemaText = found.schemaText;
  const known: KnownEventType = {
    eventTypeId: found.eventTypeId,
    schema: found.schema,
    schemaText,
    validatorKey: `${found.eventTypeId}:${schemaText ? createHash('sha1').update(schemaText).digest('hex') : ''}`,
  };
  if (knownEventTypes.size >= MAX_KNOWN_EVENT_TYPES) knownEventTypes.clear();
  knownEventTypes.set(eventTypeKey(workspaceId, input), known);
  return known;
}

async function checkPayload(
  workspaceId: string,
  known: KnownEventType,
  dataText: string,
  eventType: string,
): Promise<void> {
  if (!known.schemaText) return;
  const problems = await validateAgainstSchema(workspaceId, known.validatorKey, known.schemaText, dataText);
  if (problems.length) {
    throw new DispatchError(
      'INVALID_PAYLOAD',
      `data does not match the schema of ${eventType}: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`,
      {
        problems,
      },
    );
  }
}

interface Stored {
  eventTypeOk: boolean;
  endpointCount: number;
  message: Message | null;
  deliveries: { id: string; endpointId: string }[];
}

interface ToStore {
  workspaceId: string;
  known: KnownEventType;
  input: SendMessageInput;
  mode: SendMode;
  message: { id: string; uid: string; serialized: string; dataHash: string; deliverAt: Date | null };
  deliveryIdCount: number;
  /** The sending request's trace, carried by its deliveries' jobs to each try. */
  traceparent?: string | undefined;
  /** Its span in the group commit (tracing on). */
  span?: Span | undefined;
}

/** Most messages stored by one statement. */
const STORE_BATCH = 100;

/**
 * Stores a message as a group commit (src/db/group-commit.ts): messages sent
 * while a store transaction runs, by concurrent requests, are stored together
 * by the next one: one statement for the rows, then the queue's insert of
 * every first try of the batch (DeliveryHooks), then one commit.
 */
function storeMessage(ctx: DomainContext, item: ToStore): Promise<Stored> {
  let byHooks = storeBatchers.get(ctx.pool);
  if (!byHooks) {
    byHooks = new WeakMap();
    storeBatchers.set(ctx.pool, byHooks);
  }
  let store = byHooks.get(ctx.hooks);
  if (!store) {
    const { pool, hooks } = ctx;
    const write = (items: ToStore[]) =>
      inTransaction(pool, async (sql) => {
        for (const item of items) item.span?.setAttribute('dispatch.group_commit.messages', items.length);
        const stored = await storeMessages(sql, items);
        await hooks.deliveriesCreated(sql, deliveriesOf(stored, items), { manual: false });
        return stored;
      });
    store = createGroupCommit<ToStore, Stored>({
      maxBatch: STORE_BATCH,
      writeBatch: write,
      writeAlone: async (one) => (await write([one]))[0]!,
    });
    byHooks.set(ctx.hooks, store);
  }
  if (!tracingOn()) return store(item);
  const commit = store;
  return traced(
    'dispatch.message.group_commit',
    { attributes: { 'dispatch.app.id': item.input.appId, 'dispatch.message.id': item.message.id } },
    (span) => commit({ ...item, span }),
  );
}

const storeBatchers = new WeakMap<pg.Pool, WeakMap<DeliveryHooks, (item: ToStore) => Promise<Stored>>>();

function deliveriesOf(stored: Stored[], items: ToStore[] = []): NewDelivery[] {
  const now = Date.now();
  return stored.flatMap(({ message, deliveries }, i) =>
    message
      ? deliveries.map((d) => ({
          id: d.id,
          messageId: message.id,
          endpointId: d.endpointId,
          appId: message.appId,
          recipientId: message.recipientId,
          ...(message.deliverAt && message.deliverAt.getTime() > now ? { deliverAt: message.deliverAt } : {}),
          traceparent: items[i]?.traceparent,
        }))
      : [],
  );
}

/**
 * One statement stores a batch of messages, in one snapshot.
 * For each message it checks the event type is (still) active, in an app of
 * the sender's workspace, with the schema the data was validated against;
 * creates the recipient if new; stores the message and one delivery per
 * enabled endpoint of the recipient whose filter matches (the caller queues
 * the first try of each in the same transaction). It
 * writes nothing for a message whose event type check fails, whose
 * recipient has more matching endpoints than delivery ids were made ready
 * (the caller tries again with enough), or whose id is taken (no recipient
 * is created for a duplicate either). Rows are written in key order, so
 * concurrent batches do not deadlock on each other's keys. Each round trip
 * costs the API process more CPU than the statement costs PostgreSQL
 * (docs/benchmarks.md), hence one, named, planned once per connection.
 */
async function storeMessages(sql: SqlExecutor, items: ToStore[]): Promise<Stored[]> {
  const perMessage = Math.max(...items.map((item) => item.deliveryIdCount));
  const deliveryIds = Array.from({ length: items.length * perMessage }, () => newId('Delivery'));
  const { rows } = await sql.query<
    { eventTypeOk: boolean; endpointCount: number; deliveryIds: string[]; deliveryEndpointIds: string[] } & (
      | Message
      | { [K in keyof Message]: null }
    )
  >({
    name: 'dispatch_store_messages',
    text: `WITH input AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $14::boolean[], $15::text[], $16::timestamptz[])
         WITH ORDINALITY AS i(id, "appId", uid, "eventType", data, "dataHash", "recipientUid", "newRecipientId", "eventTypeId", "workspaceId", schema, test, "onlyEndpointId", "deliverAt", ord)
     ), usable AS (
       SELECT i.ord FROM input i
       JOIN "EventType" et ON et.id = i."eventTypeId" AND et."appId" = i."appId" AND et."archivedAt" IS NULL
         AND et.schema IS NOT DISTINCT FROM i.schema::jsonb
       JOIN "App" a ON a.id = i."appId" AND a."workspaceId" = i."workspaceId"
     ), taken AS MATERIALIZED (
       -- LATERAL with LIMIT / OFFSET 0 keeps these lookups index probes per
       -- message: the planner cannot know how few messages a batch holds, and
       -- a generic plan hashed whole tables. MATERIALIZED (here and below):
       -- it guesses one row for every CTE, and a nested loop over a CTE
       -- inlined into it ran the probes once per message of the batch.
       SELECT i.ord FROM input i, LATERAL (SELECT 1 FROM "Message" m WHERE m."appId" = i."appId" AND m.uid = i.uid LIMIT 1) t
     ), existing AS (
       SELECT i.ord, r.id FROM input i JOIN usable u ON u.ord = i.ord,
         LATERAL (SELECT r.id FROM "Recipient" r WHERE r."appId" = i."appId" AND r.uid = i."recipientUid" LIMIT 1) r
     ), endpoints AS (
       SELECT x.ord, e.id, row_number() OVER (PARTITION BY x.ord ORDER BY e.id) AS n
       FROM existing x JOIN input i ON i.ord = x.ord,
         LATERAL (SELECT e.id FROM "Endpoint" e
                  WHERE e."recipientId" = x.id AND NOT e.disabled AND (cardinality(e."eventTypes") = 0 OR i."eventType" = ANY(e."eventTypes"))
                    AND (i."onlyEndpointId" IS NULL OR e.id = i."onlyEndpointId")
                  OFFSET 0) e
     ), counted AS MATERIALIZED (
       SELECT i.ord, count(e.ord)::int AS c FROM input i LEFT JOIN endpoints e ON e.ord = i.ord GROUP BY i.ord
     ), wanted AS (
       SELECT i.* FROM input i JOIN usable u ON u.ord = i.ord JOIN counted c ON c.ord = i.ord
       WHERE c.c <= $13 AND NOT EXISTS (SELECT 1 FROM taken t WHERE t.ord = i.ord)
     ), created AS (
       INSERT INTO "Recipient" (id, "appId", uid)
       SELECT DISTINCT ON (w."appId", w."recipientUid") w."newRecipientId", w."appId", w."recipientUid"
       FROM wanted w WHERE NOT EXISTS (SELECT 1 FROM existing x WHERE x.ord = w.ord)
       ORDER BY w."appId", w."recipientUid"
       ON CONFLICT ("appId", uid) DO UPDATE SET uid = EXCLUDED.uid
       RETURNING id, "appId", uid
     ), recipient AS MATERIALIZED (
       SELECT w.ord, COALESCE(x.id, c.id) AS id
       FROM wanted w
         LEFT JOIN existing x ON x.ord = w.ord
         LEFT JOIN created c ON x.id IS NULL AND c."appId" = w."appId" AND c.uid = w."recipientUid"
     ), message AS (
       INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash", test, "deliverAt")
       SELECT w.id, w."appId", r.id, w.uid, w."eventType", w.data::jsonb, w."dataHash", w.test, w."deliverAt"
       FROM wanted w JOIN recipient r ON r.ord = w.ord AND r.id IS NOT NULL
       ORDER BY w."appId", w.uid
       ON CONFLICT ("appId", uid) DO NOTHING
       RETURNING id, "appId", "recipientId", uid, "eventType", data, "dataHash", test, "deliverAt", "createdAt"
     ), delivery AS (
       -- A scheduled message's deliveries wait, SCHEDULED, for its deliverAt (their first try's startAfter).
       INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", status, "nextAttemptAt", "updatedAt")
       SELECT ($12::text[])[((i.ord - 1) * $13 + e.n)::int], m."appId", m."recipientId", m.id, e.id,
         CASE WHEN m."deliverAt" > now() THEN 'SCHEDULED'::"DeliveryStatus" ELSE 'PENDING'::"DeliveryStatus" END,
         GREATEST(m."deliverAt", now()), now()
       FROM message m JOIN input i ON i.id = m.id JOIN endpoints e ON e.ord = i.ord
       RETURNING id, "endpointId", "messageId"
     ), made AS (
       SELECT "messageId", array_agg(id ORDER BY "endpointId") AS ids, array_agg("endpointId" ORDER BY "endpointId") AS "endpointIds"
       FROM delivery GROUP BY "messageId"
     )
     SELECT EXISTS (SELECT 1 FROM usable u WHERE u.ord = i.ord) AS "eventTypeOk", c.c AS "endpointCount",
       m.id, m."appId", m."recipientId", m.uid, m."eventType", m.data, m."dataHash", m.test, m."deliverAt", m."createdAt",
       COALESCE(made.ids, '{}') AS "deliveryIds", COALESCE(made."endpointIds", '{}') AS "deliveryEndpointIds"
     FROM input i JOIN counted c ON c.ord = i.ord LEFT JOIN message m ON m.id = i.id LEFT JOIN made ON made."messageId" = i.id
     ORDER BY i.ord`,
    values: [
      items.map((it) => it.message.id),
      items.map((it) => it.input.appId),
      items.map((it) => it.message.uid),
      items.map((it) => it.input.eventType),
      items.map((it) => it.message.serialized),
      items.map((it) => it.message.dataHash),
      items.map((it) => it.input.recipientUid),
      items.map(() => newId('Recipient')),
      items.map((it) => it.known.eventTypeId),
      items.map((it) => it.workspaceId),
      items.map((it) => it.known.schemaText),
      deliveryIds,
      perMessage,
      items.map((it) => it.mode.test),
      items.map((it) => it.mode.endpointId),
      items.map((it) => it.message.deliverAt?.toISOString() ?? null),
    ],
  });
  return rows.map(({ eventTypeOk, endpointCount, deliveryIds: ids, deliveryEndpointIds: endpointIds, ...stored }) => ({
    eventTypeOk,
    // A batch made ready as many ids as its neediest message: a message over
    // its own count but within the batch's was stored, so no second round.
    endpointCount,
    message: stored.id === null ? null : (stored as Message),
    deliveries: ids.map((id, i) => ({ id, endpointId: endpointIds[i]! })),
  }));
}

/** The message of an app named by its Dispatch id (msg_…) or the caller's messageId. */
export function messageNamed(appId: string, id: string): Prisma.MessageWhereInput {
  return { appId, OR: [{ id }, { uid: id }] };
}

/** A message by its Dispatch id (msg_…) or the caller's messageId, if the actor may see it. */
export function findMessage(ctx: DomainContext, appId: string, id: string): Promise<Message | null> {
  return ctx.prisma.message.findFirst({
    where: { AND: [messageNamed(appId, id), visible.message(ctx.actor)] },
    orderBy: { id: 'asc' },
  });
}

export interface SendTestMessageInput {
  eventType: string;
  /** The data to send; when absent, the event type's example (exampleOf its schema). */
  data?: unknown;
  /** One of the recipient's endpoints; when absent, every enabled endpoint that takes the event type. */
  endpointId?: string | null;
}

/**
 * A test event sent from the portal: a message marked `test`, to the portal
 * token's own recipient (and its endpoints only), of an active event type of
 * its app, its data checked against the type's schema like any message.
 * A test that would reach no endpoint is refused, so the customer sees why.
 */
export async function sendTestMessage(ctx: DomainContext, input: SendTestMessageInput): Promise<SendMessageResult> {
  const { actor } = ctx;
  if (actor.kind !== 'portal') throw forbidden('test messages are sent from the portal; an API key uses sendMessage');
  checkEventTypeName(input.eventType);
  const eventType = await ctx.prisma.eventType.findFirst({
    where: { AND: [{ name: input.eventType }, visible.eventType(actor)] },
  });
  if (!eventType) throw new DispatchError('UNKNOWN_EVENT_TYPE', `event type ${input.eventType} does not exist`);
  const takes = { OR: [{ eventTypes: { isEmpty: true } }, { eventTypes: { has: input.eventType } }] };
  if (input.endpointId != null) {
    const endpoint = await ctx.prisma.endpoint.findFirst({
      where: { AND: [{ id: input.endpointId }, visible.endpoint(actor)] },
    });
    if (!endpoint) throw notFound('endpoint');
    if (endpoint.disabled) throw new DispatchError('ENDPOINT_DISABLED', 'this endpoint is disabled: enable it first');
    if (endpoint.eventTypes.length && !endpoint.eventTypes.includes(input.eventType))
      throw badInput(`this endpoint does not take ${input.eventType}: add it to the endpoint's event types first`);
  } else {
    const count = await ctx.prisma.endpoint.count({
      where: { AND: [visible.endpoint(actor), { disabled: false }, takes] },
    });
    if (count === 0) throw badInput(`no enabled endpoint takes ${input.eventType}: add one, or subscribe one to it`);
  }
  return send(
    ctx,
    actor.workspaceId,
    {
      appId: actor.appId,
      recipientUid: actor.recipientUid,
      eventType: input.eventType,
      data: input.data === undefined || input.data === null ? exampleOf(eventType.schema) : input.data,
    },
    { test: true, endpointId: input.endpointId ?? null },
  );
}
