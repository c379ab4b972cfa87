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

  // One round trip for everything known before writing: the app, the event
  // type, and the recipient's matching endpoints (none when it is new). Each
  // round trip to PostgreSQL costs the API process more CPU than the
  // statement costs the server, and planning costs the server as much as
  // running (docs/benchmarks.md), so sending does as few round trips as it
  // can (one statement without endpoints, a four-statement transaction with
  // them) with named statements, planned once per connection.
  const { rows } = await ctx.pool.query<{
    appId: string;
    eventTypeId: string | null;
    schema: object | null;
    archivedAt: Date | null;
    recipientKey: string | null;
    endpointIds: string[];
  }>({
    name: 'dispatch_send_lookup',
    text: `SELECT a.id AS "appId", et.id AS "eventTypeId", et.schema, et."archivedAt", r.id AS "recipientKey",
       ARRAY(SELECT e.id FROM "Endpoint" e
             WHERE e."recipientId" = r.id AND NOT e.disabled AND (cardinality(e."eventTypes") = 0 OR $2 = ANY(e."eventTypes"))
             ORDER BY e.id) AS "endpointIds"
     FROM "App" a
     LEFT JOIN "EventType" et ON et."appId" = a.id AND et.name = $2
     LEFT JOIN "Recipient" r ON r."appId" = a.id AND r.uid = $4
     WHERE a.id = $1 AND a."workspaceId" = $3`,
    values: [input.appId, input.eventType, operator.workspaceId, input.recipientId],
  });
  const found = rows[0];
  if (!found) throw notFound('app');
  if (!found.eventTypeId || found.archivedAt) {
    throw new DispatchError('UNKNOWN_EVENT_TYPE', `event type ${input.eventType} does not exist${found.archivedAt ? ' (it is archived)' : ''}`);
  }
  if (found.schema) {
    const problems = validateAgainstSchema(`${found.eventTypeId}`, found.schema, input.data);
    if (problems.length) {
      throw new DispatchError('INVALID_PAYLOAD', `data does not match the schema of ${input.eventType}: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`, {
        problems,
      });
    }
  }
  const dataHash = hashData(input.data);

  if (givenUid !== null) {
    const existing = await findByUid(ctx.pool, found.appId, givenUid);
    if (existing) return duplicateOrConflict(existing, input, dataHash);
  }

  const id = newId('Message');
  const uid = givenUid ?? id;
  const messageValues = [id, found.appId, uid, input.eventType, serialized, dataHash];
  let outcome: { raced: true } | { raced: false; message: Message; deliveries: NewDelivery[] };
  if (found.endpointIds.length === 0) {
    // Nothing to deliver: one statement (creating the recipient if new) is its own transaction.
    const inserted = await ctx.pool.query<Message>({
      name: 'dispatch_send_message',
      text: `WITH created AS (
         INSERT INTO "Recipient" (id, "appId", uid) SELECT $8, $2, $9 WHERE $7::text IS NULL
         ON CONFLICT ("appId", uid) DO UPDATE SET uid = EXCLUDED.uid
         RETURNING id
       ), recipient AS (
         SELECT $7::text AS id WHERE $7::text IS NOT NULL
         UNION ALL
         SELECT id FROM created
       )
       INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
       SELECT $1, $2, recipient.id, $3, $4, $5, $6 FROM recipient
       ON CONFLICT ("appId", uid) DO NOTHING
       RETURNING id, "appId", "recipientId", uid, "eventType", data, "dataHash", "createdAt"`,
      values: [...messageValues, found.recipientKey, newId('Recipient'), input.recipientId],
    });
    // Another request stored this id first (it waited for that one to commit).
    outcome = inserted.rowCount === 0 ? { raced: true } : { raced: false, message: inserted.rows[0]!, deliveries: [] };
  } else {
    const recipientId = found.recipientKey!;
    const planned = found.endpointIds.map((endpointId) => ({ id: newId('Delivery'), endpointId }));
    // The message, its deliveries and their first tries (rows of the
    // delivery queue) in one statement, so one commit stores them all; an
    // endpoint deleted or disabled since it was read gets no delivery.
    const inserted = await ctx.pool.query<Message & { deliveryIds: string[]; deliveryEndpointIds: string[] }>({
      name: 'dispatch_send_message_deliveries',
      text: `WITH message AS (
         INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
         VALUES ($1, $2, $7, $3, $4, $5, $6)
         ON CONFLICT ("appId", uid) DO NOTHING
         RETURNING id, "appId", "recipientId", uid, "eventType", data, "dataHash", "createdAt"
       ), delivery AS (
         INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "nextAttemptAt", "updatedAt")
         SELECT planned.id, message."appId", message."recipientId", message.id, e.id, now(), now()
         FROM message, unnest($8::text[], $9::text[]) AS planned(id, "endpointId")
         JOIN "Endpoint" e ON e.id = planned."endpointId" AND NOT e.disabled
         RETURNING id, "endpointId"
       ), job AS (
         INSERT INTO "DeliveryJob" ("deliveryId", "endpointId", trigger, try)
         SELECT id, "endpointId", 'SCHEDULED', 1 FROM delivery
       )
       SELECT message.*,
         ARRAY(SELECT id FROM delivery ORDER BY "endpointId") AS "deliveryIds",
         ARRAY(SELECT "endpointId" FROM delivery ORDER BY "endpointId") AS "deliveryEndpointIds"
       FROM message`,
      values: [...messageValues, recipientId, planned.map((d) => d.id), planned.map((d) => d.endpointId)],
    });
    if (inserted.rowCount === 0) {
      outcome = { raced: true };
    } else {
      const { deliveryIds, deliveryEndpointIds, ...message } = inserted.rows[0]!;
      const deliveries: NewDelivery[] = deliveryIds.map((deliveryId, i) => ({
        id: deliveryId,
        messageId: message.id,
        endpointId: deliveryEndpointIds[i]!,
        appId: found.appId,
        recipientId,
      }));
      outcome = { raced: false, message, deliveries };
    }
  }
  if (outcome.raced) {
    const existing = await findByUid(ctx.pool, found.appId, uid);
    if (!existing) throw new Error(`message ${uid} conflicted on insert but cannot be read`);
    return duplicateOrConflict(existing, input, dataHash);
  }
  if (outcome.deliveries.length) ctx.hooks.deliveriesCommitted?.();
  ctx.events?.messageCreated({ messageId: outcome.message.id, appId: found.appId, recipientId: outcome.message.recipientId });
  return { message: outcome.message, deduplicated: false, deliveries: outcome.deliveries };
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
