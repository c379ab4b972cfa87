import type { Delivery, Endpoint } from '../db/client.ts';
import { visible } from './access.ts';
import { type DomainContext, inTransaction, type NewDelivery } from './context.ts';
import { findEndpoint } from './endpoints.ts';
import { badInput, DispatchError, notFound } from './errors.ts';
import { newId } from './ids.ts';
import { findMessage } from './messages.ts';

function endpointDisabled(endpoint: Endpoint): DispatchError {
  return new DispatchError(
    'ENDPOINT_DISABLED',
    `endpoint ${endpoint.id} is disabled${endpoint.disabledReason ? ` (${endpoint.disabledReason})` : ''}; enable it first`,
    { endpointId: endpoint.id },
  );
}

/**
 * A manual attempt now, of one message, to one endpoint or to every enabled
 * endpoint of its recipient that subscribes to its event type (an endpoint
 * added after the message gets a delivery of its own). A named endpoint gets
 * the message whatever its filter: the caller asked for it by name. Manual
 * attempts are not retried. Returns the deliveries, each PENDING until its
 * attempt starts.
 */
export async function resendMessage(
  ctx: DomainContext,
  input: { appId: string; messageId: string; endpointId?: string | null },
): Promise<Delivery[]> {
  const message = await findMessage(ctx, input.appId, input.messageId);
  if (!message) throw notFound('message');
  let endpointIds: string[];
  if (input.endpointId != null) {
    const endpoint = await ctx.prisma.endpoint.findFirst({
      where: { id: input.endpointId, recipientId: message.recipientId, AND: [visible.endpoint(ctx.actor)] },
    });
    if (!endpoint) throw notFound('endpoint');
    if (endpoint.disabled) throw endpointDisabled(endpoint);
    endpointIds = [endpoint.id];
  } else {
    const endpoints = await ctx.pool.query<{ id: string }>(
      `SELECT id FROM "Endpoint"
       WHERE "recipientId" = $1 AND NOT disabled AND (cardinality("eventTypes") = 0 OR $2 = ANY("eventTypes"))
       ORDER BY id`,
      [message.recipientId, message.eventType],
    );
    endpointIds = endpoints.rows.map((e) => e.id);
  }
  if (endpointIds.length === 0) return [];

  const ids = await inTransaction(ctx.pool, async (sql) => {
    // A delivery that exists is reused (its history stays in one place); one
    // in flight stays SENDING, any other waits for the manual attempt.
    const { rows } = await sql.query<{ id: string; endpointId: string }>(
      `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "updatedAt")
       SELECT unnest($1::text[]), $2, $3, $4, unnest($5::text[]), now()
       ON CONFLICT ("messageId", "endpointId") DO UPDATE
         SET status = CASE WHEN "Delivery".status = 'SENDING' THEN 'SENDING'::"DeliveryStatus" ELSE 'PENDING'::"DeliveryStatus" END,
             "updatedAt" = now()
       RETURNING id, "endpointId"`,
      [endpointIds.map(() => newId('Delivery')), message.appId, message.recipientId, message.id, endpointIds],
    );
    const deliveries: NewDelivery[] = rows.map((r) => ({
      id: r.id,
      endpointId: r.endpointId,
      messageId: message.id,
      appId: message.appId,
      recipientId: message.recipientId,
    }));
    await ctx.hooks.deliveriesCreated(sql, deliveries, { manual: true });
    return deliveries.map((d) => d.id);
  });
  ctx.hooks.deliveriesCommitted?.();
  return ctx.prisma.delivery.findMany({ where: { id: { in: ids } }, orderBy: { id: 'asc' } });
}

/**
 * Resends, as background work, every FAILED delivery of an endpoint created
 * in [since, until) (until defaults to now). Returns how many were queued:
 * the FAILED deliveries in the window when the request was made.
 */
export async function recoverEndpoint(
  ctx: DomainContext,
  input: { endpointId: string; since: Date; until?: Date | null },
): Promise<{ queued: number }> {
  const endpoint = await findEndpoint(ctx, input.endpointId);
  if (!endpoint) throw notFound('endpoint');
  if (endpoint.disabled) throw endpointDisabled(endpoint);
  const until = input.until ?? new Date();
  if (Number.isNaN(input.since.getTime()) || Number.isNaN(until.getTime()))
    throw badInput('since and until must be valid times');
  if (input.since >= until) throw badInput('since must be before until');
  const recover = ctx.hooks.recoverRequested;
  if (!recover) throw new Error('the delivery engine is not running in this process');

  return inTransaction(ctx.pool, async (sql) => {
    const { rows } = await sql.query<{ count: string }>(
      `SELECT count(*) FROM "Delivery" WHERE "endpointId" = $1 AND status = 'FAILED' AND "createdAt" >= $2 AND "createdAt" < $3`,
      [endpoint.id, input.since, until],
    );
    const queued = Number(rows[0]!.count);
    if (queued > 0) await recover.call(ctx.hooks, sql, { endpointId: endpoint.id, since: input.since, until });
    return { queued };
  });
}
