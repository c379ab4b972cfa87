import { createHash } from 'node:crypto';
import type { Message, Prisma } from '../db/client.ts';
import { visible } from './access.ts';
import { requireOperator } from './apps.ts';
import { type DomainContext, type NewDelivery, type SqlExecutor } from './context.ts';
import { badInput, DispatchError, notFound } from './errors.ts';
import { checkEventTypeName } from './event-types.ts';
import { newId } from './ids.ts';
import { validateAgainstSchema } from './json-schema.ts';
import { checkExternalId } from './recipients.ts';

/** JSON with object keys sorted, so equal data hashes equal whatever its key order. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value as object).sort();
  return `{${keys
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
    .join(',')}}`;
}

export function hashData(data: unknown): string {
  return createHash('sha256').update(canonicalJson(data)).digest('hex');
}

export interface SendMessageInput {
  appId: string;
  recipientId: string;
  eventType: string;
  data?: unknown;
  messageId?: string | null;
  idempotencyKey?: string | null;
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
  if (existing.recipientUid !== input.recipientId || existing.eventType !== input.eventType || existing.dataHash !== dataHash) {
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
 * whose filter matches, in one statement with the first try of each (a row
 * of the delivery queue, "DeliveryJob"): once this returns, the message
 * cannot be lost, and `ctx.hooks.deliveriesCommitted` wakes the workers. The same id with the same content deduplicates; with other
 * content it is IDEMPOTENCY_CONFLICT.
 */
export async function sendMessage(ctx: DomainContext, input: SendMessageInput): Promise<SendMessageResult> {
  const operator = requireOperator(ctx);
  if (input.messageId != null && input.idempotencyKey != null && input.messageId !== input.idempotencyKey) {
    throw badInput('messageId and idempotencyKey are the same thing under two names; give one, or both equal');
  }
  const givenUid = input.messageId ?? input.idempotencyKey ?? null;
  if (givenUid !== null) checkExternalId(givenUid, 'messageId');
  checkExternalId(input.recipientId, 'recipientId');
  checkEventTypeName(input.eventType);
  if (input.data === undefined) throw badInput('data is required');
  const serialized = JSON.stringify(input.data);
  const size = Buffer.byteLength(serialized);
  if (size > ctx.settings.maxPayloadBytes) {
    throw new DispatchError('PAYLOAD_TOO_LARGE', `data is ${size} bytes; the limit is ${ctx.settings.maxPayloadBytes}`, {
      size,
      limit: ctx.settings.maxPayloadBytes,
    });
  }

  let known = knownEventTypes.get(eventTypeKey(operator.workspaceId, input));
  known ??= await lookupEventType(ctx, operator.workspaceId, input);
  checkPayload(known, input);
  const dataHash = hashData(input.data);
  const id = newId('Message');
  const uid = givenUid ?? id;

  let deliveryIds = GUESSED_DELIVERIES;
  for (let round = 0; ; round++) {
    if (round === 4) throw new Error(`sendMessage of ${uid} did not settle after ${round} rounds`);
    const stored = await storeMessage(ctx, operator.workspaceId, known, input, { id, uid, serialized, dataHash }, deliveryIds);
    if (!stored.eventTypeOk) {
      // The event type changed since it was cached (archived, created again
      // with another schema, its app gone): look again; that throws when it
      // is no longer usable.
      knownEventTypes.delete(eventTypeKey(operator.workspaceId, input));
      known = await lookupEventType(ctx, operator.workspaceId, input);
      checkPayload(known, input);
      continue;
    }
    if (stored.endpointCount > deliveryIds) {
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
    const deliveries: NewDelivery[] = stored.deliveries.map((d) => ({
      id: d.id,
      messageId: message.id,
      endpointId: d.endpointId,
      appId: message.appId,
      recipientId: message.recipientId,
    }));
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

const eventTypeKey = (workspaceId: string, input: SendMessageInput) => `${workspaceId}\u0000${input.appId}\u0000${input.eventType}`;

/** The app (NOT_FOUND) and its active event type (UNKNOWN_EVENT_TYPE), looked up and cached. */
async function lookupEventType(ctx: DomainContext, workspaceId: string, input: SendMessageInput): Promise<KnownEventType> {
  const { rows } = await ctx.pool.query<{ eventTypeId: string | null; schema: object | null; archivedAt: Date | null }>({
    name: 'dispatch_send_lookup',
    text: `SELECT et.id AS "eventTypeId", et.schema, et."archivedAt"
     FROM "App" a LEFT JOIN "EventType" et ON et."appId" = a.id AND et.name = $2
     WHERE a.id = $1 AND a."workspaceId" = $3`,
    values: [input.appId, input.eventType, workspaceId],
  });
  const found = rows[0];
  if (!found) throw notFound('app');
  if (!found.eventTypeId || found.archivedAt) {
    throw new DispatchError('UNKNOWN_EVENT_TYPE', `event type ${input.eventType} does not exist${found.archivedAt ? ' (it is archived)' : ''}`);
  }
  const schemaText = found.schema ? JSON.stringify(found.schema) : null;
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

function checkPayload(known: KnownEventType, input: SendMessageInput): void {
  if (!known.schema) return;
  const problems = validateAgainstSchema(known.validatorKey, known.schema, input.data);
  if (problems.length) {
    throw new DispatchError('INVALID_PAYLOAD', `data does not match the schema of ${input.eventType}: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, {
      problems,
    });
  }
}

interface Stored {
  eventTypeOk: boolean;
  endpointCount: number;
  message: Message | null;
  deliveries: { id: string; endpointId: string }[];
}

/**
 * One statement stores everything, in one snapshot and one commit: it checks
 * the event type is (still) active with the schema the data was validated
 * against, creates the recipient if new, stores the message, one delivery per
 * enabled endpoint of the recipient whose filter matches, and the first try
 * of each (a row of the delivery queue, trigger SCHEDULED, try 1, due now).
 * It writes nothing when the event type check fails, when the recipient has
 * more matching endpoints than delivery ids were given (the caller tries
 * again with enough), or when the message id is taken (no recipient is
 * created for a duplicate either). Each round trip costs the API process
 * more CPU than the statement costs PostgreSQL (docs/benchmarks.md), hence
 * one, named, planned once per connection.
 */
async function storeMessage(
  ctx: DomainContext,
  workspaceId: string,
  known: KnownEventType,
  input: SendMessageInput,
  message: { id: string; uid: string; serialized: string; dataHash: string },
  deliveryIdCount: number,
): Promise<Stored> {
  const deliveryIds = Array.from({ length: deliveryIdCount }, () => newId('Delivery'));
  const { rows } = await ctx.pool.query<
    { eventTypeOk: boolean; endpointCount: number; deliveryIds: string[]; deliveryEndpointIds: string[] } & (Message | { [K in keyof Message]: null })
  >({
    name: 'dispatch_send_message',
    text: `WITH et AS (
       SELECT et.id FROM "EventType" et JOIN "App" a ON a.id = et."appId"
       WHERE et.id = $10 AND et."appId" = $2 AND et."archivedAt" IS NULL AND a."workspaceId" = $11
         AND et.schema IS NOT DISTINCT FROM $12::jsonb
     ), taken AS (
       SELECT 1 FROM "Message" m WHERE m."appId" = $2 AND m.uid = $3
     ), existing AS (
       SELECT r.id FROM "Recipient" r, et WHERE r."appId" = $2 AND r.uid = $7
     ), endpoints AS (
       SELECT e.id, row_number() OVER (ORDER BY e.id) AS n
       FROM "Endpoint" e, existing
       WHERE e."recipientId" = existing.id AND NOT e.disabled AND (cardinality(e."eventTypes") = 0 OR $4 = ANY(e."eventTypes"))
     ), fits AS (
       SELECT 1 WHERE (SELECT count(*) FROM endpoints) <= cardinality($9::text[])
     ), created AS (
       INSERT INTO "Recipient" (id, "appId", uid)
       SELECT $8, $2, $7 FROM et WHERE NOT EXISTS (SELECT 1 FROM existing) AND NOT EXISTS (SELECT 1 FROM taken)
       ON CONFLICT ("appId", uid) DO UPDATE SET uid = EXCLUDED.uid
       RETURNING id
     ), recipient AS (
       SELECT id FROM existing UNION ALL SELECT id FROM created
     ), message AS (
       INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
       SELECT $1, $2, recipient.id, $3, $4, $5, $6 FROM recipient, fits WHERE NOT EXISTS (SELECT 1 FROM taken)
       ON CONFLICT ("appId", uid) DO NOTHING
       RETURNING id, "appId", "recipientId", uid, "eventType", data, "dataHash", "createdAt"
     ), delivery AS (
       INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "nextAttemptAt", "updatedAt")
       SELECT ($9::text[])[endpoints.n], message."appId", message."recipientId", message.id, endpoints.id, now(), now()
       FROM message, endpoints
       RETURNING id, "endpointId"
     ), job AS (
       INSERT INTO "DeliveryJob" ("deliveryId", "endpointId", trigger, try)
       SELECT id, "endpointId", 'SCHEDULED', 1 FROM delivery
     )
     SELECT EXISTS (SELECT 1 FROM et) AS "eventTypeOk",
       (SELECT count(*) FROM endpoints)::int AS "endpointCount",
       message.id, message."appId", message."recipientId", message.uid, message."eventType", message.data, message."dataHash", message."createdAt",
       ARRAY(SELECT id FROM delivery ORDER BY "endpointId") AS "deliveryIds",
       ARRAY(SELECT "endpointId" FROM delivery ORDER BY "endpointId") AS "deliveryEndpointIds"
     FROM (SELECT 1) AS one LEFT JOIN message ON true`,
    values: [
      message.id, input.appId, message.uid, input.eventType, message.serialized, message.dataHash,
      input.recipientId, newId('Recipient'), deliveryIds, known.eventTypeId, workspaceId, known.schemaText,
    ],
  });
  const { eventTypeOk, endpointCount, deliveryIds: ids, deliveryEndpointIds: endpointIds, ...stored } = rows[0]!;
  return {
    eventTypeOk,
    endpointCount,
    message: stored.id === null ? null : (stored as Message),
    deliveries: ids.map((id, i) => ({ id, endpointId: endpointIds[i]! })),
  };
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
