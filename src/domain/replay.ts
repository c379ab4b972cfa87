import type { Delivery, DeliveryStatus, Endpoint, Replay } from '../db/client.ts';
import { visible } from './access.ts';
import { type DomainContext, inTransaction, type NewDelivery } from './context.ts';
import { findEndpoint } from './endpoints.ts';
import { badInput, DispatchError, notFound } from './errors.ts';
import { checkEventTypeName } from './event-types.ts';
import { idFloorAt, newId } from './ids.ts';
import { findMessage } from './messages.ts';
import { checkExternalId } from './recipients.ts';

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

/** Most deliveries one replayMessages call may replay (BAD_USER_INPUT beyond: narrow the filters). */
export const MAX_REPLAY_DELIVERIES = 10_000;
/** Event types one replayMessages call may name. */
const MAX_REPLAY_EVENT_TYPES = 100;

/** What a replay may resend: deliveries that are settled. One with a try pending (or scheduled, or canceled) is left alone. */
const REPLAYABLE: DeliveryStatus[] = ['SUCCEEDED', 'FAILED'];

export interface ReplayMessagesInput {
  appId: string;
  /** The operator's id of one recipient; a portal token's own whether given or not. */
  recipientUid?: string | null;
  endpointId?: string | null;
  eventTypes?: string[] | null;
  /** FAILED or SUCCEEDED; absent: both. */
  status?: DeliveryStatus | null;
  since: Date;
  /** Default now. */
  until?: Date | null;
  /** The caller's id of this request: the same one (with the same filters) answers the same replay. */
  requestId?: string | null;
}

export interface ReplayRequested {
  jobId: string;
  count: number;
  deduplicated: boolean;
}

/**
 * A bulk replay: one manual try for each settled delivery (SUCCEEDED or
 * FAILED, or only those of `status`) of the app's messages created in
 * [since, until), narrowed by recipient, endpoint and event types. Enabled
 * endpoints only. The matching deliveries are chosen now, in one statement
 * (at most MAX_REPLAY_DELIVERIES), and answered as `count`; a background
 * job (src/delivery/replay.ts) queues their tries, skipping any that has
 * a try pending by then, so a second replay of the same window does not
 * send a delivery twice. The same requestId answers the same replay.
 */
export async function replayMessages(ctx: DomainContext, input: ReplayMessagesInput): Promise<ReplayRequested> {
  const { actor } = ctx;
  const until = input.until ?? new Date();
  if (Number.isNaN(input.since.getTime()) || Number.isNaN(until.getTime()))
    throw badInput('since and until must be valid times');
  if (input.since >= until) throw badInput('since must be before until');
  if (input.status != null && !REPLAYABLE.includes(input.status))
    throw badInput(`status must be FAILED or SUCCEEDED: only settled deliveries are replayed`);
  const eventTypes = [...new Set(input.eventTypes ?? [])].sort();
  if (eventTypes.length > MAX_REPLAY_EVENT_TYPES) throw badInput(`at most ${MAX_REPLAY_EVENT_TYPES} event types`);
  for (const name of eventTypes) checkEventTypeName(name);
  if (input.requestId != null) checkExternalId(input.requestId, 'requestId');
  if (input.recipientUid != null) checkExternalId(input.recipientUid, 'recipientId');

  const app = await ctx.prisma.app.findFirst({ where: { id: input.appId, AND: [visible.app(actor)] } });
  if (!app) throw notFound('app');
  let recipientId: string | null = null;
  if (actor.kind === 'portal') {
    if (input.recipientUid != null && input.recipientUid !== actor.recipientUid) throw notFound('recipient');
    recipientId = actor.recipientId;
  } else if (input.recipientUid != null) {
    const recipient = await ctx.prisma.recipient.findFirst({ where: { appId: app.id, uid: input.recipientUid } });
    if (!recipient) throw notFound('recipient');
    recipientId = recipient.id;
  }
  if (input.endpointId != null) {
    const endpoint = await ctx.prisma.endpoint.findFirst({
      where: {
        id: input.endpointId,
        appId: app.id,
        ...(recipientId ? { recipientId } : {}),
        AND: [visible.endpoint(actor)],
      },
    });
    if (!endpoint) throw notFound('endpoint');
    if (endpoint.disabled) throw endpointDisabled(endpoint);
  }
  const requester = actor.kind === 'portal' ? actor.recipientId : 'operator';
  const filters = {
    recipientId,
    endpointId: input.endpointId ?? null,
    eventTypes,
    status: input.status ?? null,
    since: input.since,
    until,
  };
  const replayRequested = ctx.hooks.replayRequested;
  if (!replayRequested) throw new Error('the delivery engine is not running in this process');

  if (input.requestId != null) {
    const existing = await ctx.prisma.replay.findUnique({
      where: { appId_requester_requestId: { appId: app.id, requester, requestId: input.requestId } },
    });
    if (existing) return sameRequest(existing, { ...filters, until: input.until ?? null });
  }

  const id = newId('Replay');
  const created = await inTransaction(ctx.pool, async (sql) => {
    const inserted = await sql.query(
      `INSERT INTO "Replay" (id, "appId", requester, "requestId", "recipientId", "endpointId", "eventTypes", status, since, until, total)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)
       ON CONFLICT ("appId", requester, "requestId") DO NOTHING`,
      [
        id,
        app.id,
        requester,
        input.requestId ?? null,
        recipientId,
        filters.endpointId,
        eventTypes,
        filters.status,
        input.since,
        until,
      ],
    );
    // The same requestId, by a request that committed first.
    if (inserted.rowCount === 0) return false;
    // Rows of messages in the window by the primary key (ids sort by creation
    // time), createdAt keeping the bounds exact.
    const matched = await sql.query(
      `INSERT INTO "ReplayDelivery" ("replayId", "deliveryId")
       SELECT $1, d.id
       FROM "Message" m
       JOIN "Delivery" d ON d."messageId" = m.id
       JOIN "Endpoint" e ON e.id = d."endpointId" AND NOT e.disabled
       WHERE m."appId" = $2 AND m.id >= $3 AND m.id < $4 AND m."createdAt" >= $5 AND m."createdAt" < $6
         AND ($7::text IS NULL OR m."recipientId" = $7)
         AND ($8::text IS NULL OR d."endpointId" = $8)
         AND (cardinality($9::text[]) = 0 OR m."eventType" = ANY($9::text[]))
         AND d.status = ANY($10::"DeliveryStatus"[])
       ORDER BY d.id
       LIMIT ${MAX_REPLAY_DELIVERIES + 1}`,
      [
        id,
        app.id,
        idFloorAt('Message', input.since),
        // The floor of the millisecond after: ids made in until's own millisecond are checked by createdAt.
        idFloorAt('Message', new Date(until.getTime() + 1)),
        input.since,
        until,
        recipientId,
        filters.endpointId,
        eventTypes,
        filters.status ? [filters.status] : REPLAYABLE,
      ],
    );
    const count = matched.rowCount ?? 0;
    if (count > MAX_REPLAY_DELIVERIES) {
      throw badInput(
        `more than ${MAX_REPLAY_DELIVERIES} deliveries match; narrow the window or the filters (one replay replays at most ${MAX_REPLAY_DELIVERIES})`,
        { limit: MAX_REPLAY_DELIVERIES },
      );
    }
    await sql.query(`UPDATE "Replay" SET total = $2, "finishedAt" = CASE WHEN $2 = 0 THEN now() END WHERE id = $1`, [
      id,
      count,
    ]);
    if (count > 0) await replayRequested.call(ctx.hooks, sql, id);
    return { jobId: id, count, deduplicated: false };
  });
  if (created) return created;
  const existing = await ctx.prisma.replay.findUnique({
    where: { appId_requester_requestId: { appId: app.id, requester, requestId: input.requestId! } },
  });
  if (!existing) throw new Error(`replay ${input.requestId} conflicted on insert but cannot be read`);
  return sameRequest(existing, { ...filters, until: input.until ?? null });
}

/** The replay asked for before with this requestId: the same filters answer it, others are IDEMPOTENCY_CONFLICT. */
function sameRequest(
  existing: Replay,
  filters: Pick<Replay, 'recipientId' | 'endpointId' | 'eventTypes' | 'status' | 'since'> & { until: Date | null },
): ReplayRequested {
  const same =
    existing.recipientId === filters.recipientId &&
    existing.endpointId === filters.endpointId &&
    existing.eventTypes.join('\u0000') === filters.eventTypes.join('\u0000') &&
    existing.status === filters.status &&
    existing.since.getTime() === filters.since.getTime() &&
    // An until left to default (now) is not compared: a retry cannot give the same now.
    (filters.until === null || existing.until.getTime() === filters.until.getTime());
  if (!same) {
    throw new DispatchError(
      'IDEMPOTENCY_CONFLICT',
      `replay request ${existing.requestId} was made before with other filters`,
      { jobId: existing.id },
    );
  }
  return { jobId: existing.id, count: existing.total, deduplicated: true };
}

export interface ReplayProgress {
  jobId: string;
  /** Deliveries that matched when the replay was asked for. */
  total: number;
  /** Manual tries queued by the replay's job so far. */
  queued: number;
  /** Deliveries the job skipped: a try was pending by then, or they no longer matched. */
  skipped: number;
  /** Queued tries that started (sending, succeeded or failed). */
  sent: number;
  succeeded: number;
  failed: number;
  /** The job went through every delivery and every try it queued has ended. */
  done: boolean;
}

/**
 * A replay's progress, read from the deliveries it queued: one that was
 * settled when queued went PENDING, then SENDING, then SUCCEEDED or FAILED
 * (a manual try is not retried), so their statuses count its tries across
 * every worker process. Null when the actor may not see it.
 */
export async function replayProgress(ctx: DomainContext, jobId: string): Promise<ReplayProgress | null> {
  const replay = await ctx.prisma.replay.findFirst({
    where: { id: jobId, AND: [visible.replay(ctx.actor)] },
    select: { id: true, total: true, finishedAt: true },
  });
  if (!replay) return null;
  const { rows } = await ctx.pool.query<{
    queued: number;
    skipped: number;
    waiting: number;
    sending: number;
    succeeded: number;
    failed: number;
  }>(
    `SELECT count(*) FILTER (WHERE rd.queued)::int AS queued,
            count(*) FILTER (WHERE rd.queued IS FALSE)::int AS skipped,
            count(*) FILTER (WHERE rd.queued AND d.status IN ('PENDING', 'SCHEDULED'))::int AS waiting,
            count(*) FILTER (WHERE rd.queued AND d.status = 'SENDING')::int AS sending,
            count(*) FILTER (WHERE rd.queued AND d.status = 'SUCCEEDED')::int AS succeeded,
            count(*) FILTER (WHERE rd.queued AND d.status IN ('FAILED', 'CANCELED'))::int AS failed
     FROM "ReplayDelivery" rd JOIN "Delivery" d ON d.id = rd."deliveryId"
     WHERE rd."replayId" = $1`,
    [replay.id],
  );
  const c = rows[0]!;
  return {
    jobId: replay.id,
    total: replay.total,
    queued: c.queued,
    skipped: c.skipped,
    sent: c.sending + c.succeeded + c.failed,
    succeeded: c.succeeded,
    failed: c.failed,
    done: replay.finishedAt !== null && c.waiting === 0 && c.sending === 0,
  };
}
