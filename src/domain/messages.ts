import { createHash } from 'node:crypto';
import type { Message } from '../db/client.ts';
import { visible } from './access.ts';
import { requireOperator } from './apps.ts';
import { inTransaction, type DomainContext, type NewDelivery, type SqlExecutor } from './context.ts';
import { badInput, DispatchError, notFound } from './errors.ts';
import { checkEventTypeName } from './event-types.ts';
import { newId } from './ids.ts';
import { validateAgainstSchema } from './json-schema.ts';
import { checkExternalId, ensureRecipient } from './recipients.ts';

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
 * whose filter matches, in one transaction with the jobs that deliver them
 * (through `ctx.hooks.deliveriesCreated`): once this returns, the message
 * cannot be lost. The same id with the same content deduplicates; with other
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

  const { rows } = await ctx.pool.query<{ appId: string; eventTypeId: string | null; schema: object | null; archivedAt: Date | null }>(
    `SELECT a.id AS "appId", et.id AS "eventTypeId", et.schema, et."archivedAt"
     FROM "App" a LEFT JOIN "EventType" et ON et."appId" = a.id AND et.name = $2
     WHERE a.id = $1 AND a."workspaceId" = $3`,
    [input.appId, input.eventType, operator.workspaceId],
  );
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
  const outcome = await inTransaction(ctx.pool, async (sql) => {
    const recipient = await ensureRecipient(sql, found.appId, input.recipientId);
    const inserted = await sql.query<Message>(
      `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT ("appId", uid) DO NOTHING
       RETURNING *`,
      [id, found.appId, recipient.id, uid, input.eventType, serialized, dataHash],
    );
    // Another request stored this id first (it waited for that one to commit).
    if (inserted.rowCount === 0) return { raced: true as const };
    const message = inserted.rows[0]!;
    const endpoints = await sql.query<{ id: string }>(
      `SELECT id FROM "Endpoint"
       WHERE "recipientId" = $1 AND NOT disabled AND (cardinality("eventTypes") = 0 OR $2 = ANY("eventTypes"))
       ORDER BY id`,
      [recipient.id, input.eventType],
    );
    const deliveries: NewDelivery[] = endpoints.rows.map((e) => ({
      id: newId('Delivery'),
      messageId: message.id,
      endpointId: e.id,
      appId: found.appId,
      recipientId: recipient.id,
    }));
    if (deliveries.length) {
      await sql.query(
        `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "nextAttemptAt", "updatedAt")
         SELECT unnest($1::text[]), $2, $3, $4, unnest($5::text[]), now(), now()`,
        [deliveries.map((d) => d.id), found.appId, recipient.id, message.id, deliveries.map((d) => d.endpointId)],
      );
      await ctx.hooks.deliveriesCreated(sql, deliveries, { manual: false });
    }
    return { raced: false as const, message, deliveries };
  });
  if (outcome.raced) {
    const existing = await findByUid(ctx.pool, found.appId, uid);
    if (!existing) throw new Error(`message ${uid} conflicted on insert but cannot be read`);
    return duplicateOrConflict(existing, input, dataHash);
  }
  ctx.events?.messageCreated({ messageId: outcome.message.id, appId: found.appId, recipientId: outcome.message.recipientId });
  return { message: outcome.message, deduplicated: false, deliveries: outcome.deliveries };
}

/** A message by its Dispatch id (msg_…) or the caller's messageId, if the actor may see it. */
export function findMessage(ctx: DomainContext, appId: string, id: string): Promise<Message | null> {
  return ctx.prisma.message.findFirst({
    where: { appId, OR: [{ id }, { uid: id }], AND: [visible.message(ctx.actor)] },
    orderBy: { id: 'asc' },
  });
}
