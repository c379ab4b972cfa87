import { hash } from 'node:crypto';
import type { App, Prisma } from '../db/client.ts';
import { visible } from './access.ts';
import { requireOperator } from './apps.ts';
import {
  type DeliveryHooks,
  type DomainContext,
  inTransaction,
  type NewDelivery,
  type SqlExecutor,
} from './context.ts';
import { badInput, DispatchError } from './errors.ts';
import { newId } from './ids.ts';
import { type FeedScope, notifyMessageCreated } from './live-feed.ts';
import { ensureRecipient } from './recipients.ts';

/**
 * Operational events: what Dispatch tells an operator about its own
 * workspace (an endpoint disabled, failing, a delivery that used up its
 * schedule, …).
 *
 * They travel as ordinary messages of one app per workspace, its
 * *operational app* (`App.operational`), which `enableOperationalEvents`
 * creates with the catalog below as its event types and one recipient,
 * `operator`. The operator manages it through the same API as any app:
 * endpoints of recipient `operator` (with event type filters), secrets,
 * attempts, resend, recover, the message log. So operational webhooks are
 * signed, retried and recorded like every other webhook, and
 * `operationalEvent` (GraphQL subscription) follows the same messages.
 *
 * Each event is recorded by `recordOperationalEvent` in the transaction that
 * makes the change it reports, so it exists if and only if the change
 * commits. Nothing is recorded while a workspace has no operational app, nor
 * about the operational app's own endpoints (they would report on
 * themselves).
 */

/** The one recipient of an operational app: its endpoints receive the events. */
export const OPERATIONAL_RECIPIENT = 'operator';
export const OPERATIONAL_APP_NAME = 'Dispatch operational events';

/** Who made a change an event reports. */
export type ChangedBy = 'customer' | 'operator' | 'dispatch';

const endpointProperties = {
  id: { type: 'string', description: 'The endpoint (ep_…).' },
  appId: { type: 'string', description: 'Its app (app_…).' },
  recipientId: { type: 'string', description: "The operator's own id of the endpoint's recipient." },
  url: { type: 'string' },
  description: { type: ['string', 'null'] },
  eventTypes: { type: 'array', items: { type: 'string' }, description: 'Event types it receives; empty means all.' },
  disabled: { type: 'boolean' },
} as const;

const endpointSchema = {
  type: 'object',
  required: ['id', 'appId', 'recipientId', 'url', 'eventTypes', 'disabled'],
  properties: endpointProperties,
} as const;

const exampleEndpoint = {
  id: 'ep_01jf3k5z6w7x8y9a0b1c2d3e4f',
  appId: 'app_01jf3k2a0b1c2d3e4f5g6h7j8k',
  recipientId: 'customer_123',
  url: 'https://customer.example.com/hooks',
  description: 'Billing hooks',
  eventTypes: [],
  disabled: false,
};

const changedBy = {
  type: 'string',
  enum: ['customer', 'operator', 'dispatch'],
  description: 'customer: through the portal; operator: with an API key; dispatch: by itself.',
} as const;

function eventSchema(properties: Record<string, unknown>, required: string[], example: Record<string, unknown>) {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    type: 'object',
    required,
    properties,
    examples: [example],
  };
}

/** The catalog: the operational app's event types, with descriptions and JSON Schemas of `data`. */
export const OPERATIONAL_EVENT_TYPES = {
  'endpoint.disabled': {
    description:
      'An endpoint was disabled: by Dispatch when it answered 410 Gone (reason "gone") or failed every attempt for DISPATCH_DISABLE_AFTER_SECONDS (reason "failing"), or by the customer or operator (reason "manual"). Deliveries to it stop until it is enabled; recoverEndpoint then resends what failed meanwhile.',
    schema: eventSchema(
      {
        endpoint: endpointSchema,
        reason: { type: 'string', enum: ['gone', 'failing', 'manual'] },
        detail: { type: 'string', description: 'The reason in words, as Endpoint.disabledReason shows it.' },
        changedBy,
        failingSince: { type: ['string', 'null'], format: 'date-time' },
      },
      ['endpoint', 'reason', 'detail', 'changedBy'],
      {
        endpoint: { ...exampleEndpoint, disabled: true },
        reason: 'failing',
        detail: 'every attempt failed since 2026-12-01T10:00:00.000Z (more than 5 days)',
        changedBy: 'dispatch',
        failingSince: '2026-12-01T10:00:00.000Z',
      },
    ),
  },
  'endpoint.enabled': {
    description: 'A disabled endpoint was enabled again, by the customer or the operator.',
    schema: eventSchema({ endpoint: endpointSchema, changedBy }, ['endpoint', 'changedBy'], {
      endpoint: exampleEndpoint,
      changedBy: 'customer',
    }),
  },
  'endpoint.failing': {
    description:
      'An endpoint has failed every attempt for DISPATCH_FAILING_AFTER_SECONDS (default 1 hour). Sent once per run of failures; it is disabled if it keeps failing until disableAt.',
    schema: eventSchema(
      {
        endpoint: endpointSchema,
        failingSince: { type: 'string', format: 'date-time' },
        disableAt: { type: 'string', format: 'date-time', description: 'When it is disabled if nothing succeeds.' },
        lastAttempt: {
          type: 'object',
          properties: {
            responseStatusCode: { type: ['integer', 'null'] },
            error: { type: ['string', 'null'] },
            errorKind: { type: ['string', 'null'] },
          },
        },
      },
      ['endpoint', 'failingSince', 'disableAt'],
      {
        endpoint: exampleEndpoint,
        failingSince: '2026-12-01T10:00:00.000Z',
        disableAt: '2026-12-06T10:00:00.000Z',
        lastAttempt: { responseStatusCode: 500, error: 'the receiver answered HTTP 500', errorKind: 'http_status' },
      },
    ),
  },
  'message.attempt.exhausted': {
    description:
      'A delivery used up its retry schedule: its last scheduled attempt failed and it is now FAILED. resendMessage or recoverEndpoint can send it again.',
    schema: eventSchema(
      {
        endpoint: endpointSchema,
        messageId: { type: 'string', description: 'The message (msg_…).' },
        messageUid: { type: 'string', description: "The caller's messageId, the webhook-id." },
        eventType: { type: 'string' },
        deliveryId: { type: 'string' },
        attemptCount: { type: 'integer' },
        lastAttempt: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            responseStatusCode: { type: ['integer', 'null'] },
            error: { type: ['string', 'null'] },
            errorKind: { type: ['string', 'null'] },
          },
        },
      },
      ['endpoint', 'messageId', 'messageUid', 'eventType', 'deliveryId', 'attemptCount'],
      {
        endpoint: exampleEndpoint,
        messageId: 'msg_01jf3m0a1b2c3d4e5f6g7h8j9k',
        messageUid: 'inv_1',
        eventType: 'invoice.paid',
        deliveryId: 'dlv_01jf3m0a1b2c3d4e5f6g7h8j9m',
        attemptCount: 8,
        lastAttempt: {
          id: 'atm_01jf3m0a1b2c3d4e5f6g7h8j9n',
          responseStatusCode: null,
          error: 'connection refused',
          errorKind: 'connection',
        },
      },
    ),
  },
  'endpoint.created': {
    description:
      'A customer created an endpoint in the portal. (Endpoints the operator creates with an API key are not reported: the operator made them.)',
    schema: eventSchema({ endpoint: endpointSchema, changedBy }, ['endpoint', 'changedBy'], {
      endpoint: exampleEndpoint,
      changedBy: 'customer',
    }),
  },
  'endpoint.updated': {
    description:
      "A customer changed an endpoint in the portal (URL, description, event types, headers, enabled, or rotated its secret); `changes` names the fields. Not sent for the operator's own changes.",
    schema: eventSchema(
      {
        endpoint: endpointSchema,
        changes: { type: 'array', items: { type: 'string' } },
        changedBy,
      },
      ['endpoint', 'changes', 'changedBy'],
      { endpoint: exampleEndpoint, changes: ['url'], changedBy: 'customer' },
    ),
  },
  'endpoint.deleted': {
    description: "A customer deleted an endpoint in the portal. Not sent for the operator's own deletions.",
    schema: eventSchema({ endpoint: endpointSchema, changedBy }, ['endpoint', 'changedBy'], {
      endpoint: exampleEndpoint,
      changedBy: 'customer',
    }),
  },
  'recover.completed': {
    description:
      'A recoverEndpoint finished: every FAILED delivery of the window was queued again (`queued` of them); their attempts follow.',
    schema: eventSchema(
      {
        endpoint: endpointSchema,
        since: { type: 'string', format: 'date-time' },
        until: { type: 'string', format: 'date-time' },
        queued: { type: 'integer' },
      },
      ['endpoint', 'since', 'until', 'queued'],
      { endpoint: exampleEndpoint, since: '2026-12-01T00:00:00.000Z', until: '2026-12-02T00:00:00.000Z', queued: 12 },
    ),
  },
} as const;

export type OperationalEventType = keyof typeof OPERATIONAL_EVENT_TYPES;

/** Queues the deliveries of an event in its transaction (the delivery engine's hook). */
export type OperationalQueue = Pick<DeliveryHooks, 'deliveriesCreated'>;

/**
 * One event: its type, the endpoint it is about (which names the workspace
 * and the app; events about an operational app's own endpoints are not
 * recorded; every event's data carries it as `endpoint`), its data, and optionally a key that makes it once-only (an
 * event with the same key is recorded once: a failing run, a recover job
 * that runs again).
 */
export interface OperationalEvent {
  type: OperationalEventType;
  endpointId: string;
  data: Record<string, unknown>;
  onceKey?: string;
}

/** The endpoint as events show it; read in the transaction, so a deleted one is read before it goes. */
export interface EndpointView {
  id: string;
  appId: string;
  recipientId: string;
  url: string;
  description: string | null;
  eventTypes: string[];
  disabled: boolean;
}

interface Target {
  endpoint: EndpointView;
  opsAppId: string | null;
  ownAppIsOperational: boolean;
  opsRecipientId: string | null;
}

/**
 * Records an operational event in the transaction of `sql`: a message of the
 * workspace's operational app to its recipient `operator`, one delivery per
 * enabled endpoint of it whose filter takes the type (queued through
 * `queue`, in this transaction), and a live-feed notice that PostgreSQL sends
 * on commit (never for a rollback). Returns the message id, or null when
 * nothing was recorded (no operational app, the type archived there, an
 * event about the operational app itself, or a once-only key already used).
 * Best called after the change it reports, with the endpoint row as it now is.
 */
export async function recordOperationalEvent(
  sql: SqlExecutor,
  queue: OperationalQueue,
  event: OperationalEvent,
): Promise<string | null> {
  const target = await targetOf(sql, event.endpointId);
  if (!target || target.ownAppIsOperational || !target.opsAppId || !target.opsRecipientId) return null;
  const id = newId('Message');
  const data = { ...event.data };
  data.endpoint ??= target.endpoint;
  const text = JSON.stringify(data);
  const { rows } = await sql.query<{ id: string }>(
    `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
     SELECT $1, $2, $3, $4, $5, $6::jsonb, $7
     WHERE EXISTS (SELECT 1 FROM "EventType" WHERE "appId" = $2 AND name = $5 AND "archivedAt" IS NULL)
     ON CONFLICT ("appId", uid) DO NOTHING
     RETURNING id`,
    [id, target.opsAppId, target.opsRecipientId, event.onceKey ?? id, event.type, text, hash('sha256', text, 'hex')],
  );
  if (!rows[0]) return null;
  const endpoints = await sql.query<{ id: string }>(
    `SELECT id FROM "Endpoint"
     WHERE "recipientId" = $1 AND NOT disabled AND (cardinality("eventTypes") = 0 OR $2 = ANY("eventTypes"))
     ORDER BY id`,
    [target.opsRecipientId, event.type],
  );
  if (endpoints.rows.length) {
    const deliveries: NewDelivery[] = endpoints.rows.map((e) => ({
      id: newId('Delivery'),
      messageId: id,
      endpointId: e.id,
      appId: target.opsAppId!,
      recipientId: target.opsRecipientId!,
    }));
    await sql.query(
      `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "nextAttemptAt", "updatedAt")
       SELECT unnest($1::text[]), $2, $3, $4, unnest($5::text[]), now(), now()`,
      [deliveries.map((d) => d.id), target.opsAppId, target.opsRecipientId, id, deliveries.map((d) => d.endpointId)],
    );
    await queue.deliveriesCreated(sql, deliveries, { manual: false });
  }
  await notifyMessageCreated(sql, { messageId: id, appId: target.opsAppId, recipientId: target.opsRecipientId });
  return id;
}

async function targetOf(sql: SqlExecutor, endpointId: string): Promise<Target | undefined> {
  const { rows } = await sql.query<Target>(
    `SELECT json_build_object('id', e.id, 'appId', e."appId", 'recipientId', r.uid, 'url', e.url,
              'description', e.description, 'eventTypes', e."eventTypes", 'disabled', e.disabled) AS endpoint,
            a.operational AS "ownAppIsOperational", ops.id AS "opsAppId", opr.id AS "opsRecipientId"
     FROM "Endpoint" e
     JOIN "App" a ON a.id = e."appId"
     JOIN "Recipient" r ON r.id = e."recipientId"
     LEFT JOIN LATERAL (SELECT o.id FROM "App" o WHERE o."workspaceId" = a."workspaceId" AND o.operational LIMIT 1) ops ON true
     LEFT JOIN "Recipient" opr ON opr."appId" = ops.id AND opr.uid = $2
     WHERE e.id = $1`,
    [endpointId, OPERATIONAL_RECIPIENT],
  );
  return rows[0];
}

/** The endpoint as events show it, read with `sql` (inside the transaction that changes it). */
export async function endpointView(sql: SqlExecutor, endpointId: string): Promise<EndpointView | undefined> {
  return (await targetOf(sql, endpointId))?.endpoint;
}

/**
 * Turns operational events on for the caller's workspace: creates its
 * operational app (once; a lock on the workspace's row makes two calls at
 * once create one), with the catalog as event types (types added to the
 * catalog since are added, descriptions and schemas kept current; an
 * archived one stays archived: that is how an operator stops recording a
 * type) and the recipient `operator`. Returns the app.
 */
export async function enableOperationalEvents(ctx: DomainContext): Promise<App> {
  const operator = requireOperator(ctx);
  const appId = await inTransaction(ctx.pool, async (sql) => {
    await sql.query(`SELECT id FROM "Workspace" WHERE id = $1 FOR UPDATE`, [operator.workspaceId]);
    const existing = await sql.query<{ id: string }>(
      `SELECT id FROM "App" WHERE "workspaceId" = $1 AND operational ORDER BY id LIMIT 1`,
      [operator.workspaceId],
    );
    let id = existing.rows[0]?.id;
    if (!id) {
      id = newId('App');
      await sql.query(
        `INSERT INTO "App" (id, "workspaceId", name, "retrySchedule", operational) VALUES ($1, $2, $3, '{}', true)`,
        [id, operator.workspaceId, OPERATIONAL_APP_NAME],
      );
    }
    const types = Object.entries(OPERATIONAL_EVENT_TYPES);
    await sql.query(
      `INSERT INTO "EventType" (id, "appId", name, description, schema)
       SELECT unnest($1::text[]), $2, unnest($3::text[]), unnest($4::text[]), unnest($5::jsonb[])
       ON CONFLICT ("appId", name) DO UPDATE SET description = EXCLUDED.description, schema = EXCLUDED.schema`,
      [
        types.map(() => newId('EventType')),
        id,
        types.map(([name]) => name),
        types.map(([, t]) => t.description),
        types.map(([, t]) => JSON.stringify(t.schema)),
      ],
    );
    await ensureRecipient(sql, id, OPERATIONAL_RECIPIENT);
    return id;
  });
  return ctx.prisma.app.findUniqueOrThrow({ where: { id: appId } });
}

/** The workspace's operational app, if operational events are on. */
export function findOperationalApp(ctx: DomainContext): Promise<App | null> {
  const operator = requireOperator(ctx);
  return ctx.prisma.app.findFirst({
    where: { workspaceId: operator.workspaceId, operational: true },
    orderBy: { id: 'asc' },
  });
}

/** Who made a change, as events report it. */
export function changedByOf(ctx: DomainContext): ChangedBy {
  return ctx.actor.kind === 'portal' ? 'customer' : 'operator';
}

/**
 * Scope of the `operationalEvent` subscription: the workspace's operational
 * app (operators only; BAD_USER_INPUT while operational events are off),
 * optionally some types of the catalog.
 */
export async function operationalFeedScope(
  ctx: DomainContext,
  args: { types?: readonly string[] | null },
): Promise<FeedScope<Prisma.MessageWhereInput>> {
  const app = await findOperationalApp(ctx);
  if (!app) throw badInput('operational events are off for this workspace: turn them on with enableOperationalEvents');
  const types = args.types ?? null;
  if (types) {
    const unknown = types.filter((t) => !(t in OPERATIONAL_EVENT_TYPES));
    if (unknown.length)
      throw new DispatchError('UNKNOWN_EVENT_TYPE', `unknown operational event type(s): ${unknown.join(', ')}`, {
        eventTypes: unknown,
      });
  }
  const where: Prisma.MessageWhereInput[] = [visible.message(ctx.actor), { appId: app.id }];
  if (types) where.push({ eventType: { in: [...types] } });
  return { appId: app.id, where: { AND: where } };
}
