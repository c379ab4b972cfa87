import type { SqlExecutor } from '../domain/context.ts';
import { fifoCursor, fifoTurn, pauseMs, planRate, RATE_WINDOW_MS } from '../webhooks/endpoint-controls.ts';
import { type DeliveryJob, type DeliveryQueue, fenceOf, type RequeuedTry } from './queue.ts';

/**
 * Endpoint controls in the delivery path: the rate limit and FIFO ordering
 * (the rules are in src/webhooks/endpoint-controls.ts). Only tries of
 * endpoints that have a control come here: the claim of any other try runs
 * no statement more than before.
 *
 * Rate limit: a sliding log of the start times of the last window's tries,
 * per endpoint (EndpointControl.sent), read and written in the claim's
 * transaction. Claims are serialised by the fetch lock (queue.ts), so the
 * log is never written by two at once, and every worker process shares it.
 * A try over the limit goes back to the queue as a job ready when a place
 * frees (queue.requeue): it waits without a worker slot. A 429 with
 * Retry-After pauses the endpoint (EndpointControl.pausedUntil).
 *
 * FIFO: the tries of a FIFO endpoint are queued in the FIFO tier, one
 * active at a time, so the claim and finish of one never overlap another's.
 * A claimed try goes only if no unfinished delivery of the endpoint comes
 * before it (by id: ids sort by creation time); otherwise it is parked: its
 * job is deleted, the delivery stays PENDING with no nextAttemptAt and
 * heldById naming the one before it. When a delivery's turn ends (it
 * succeeded or failed for good, or its try found nothing to send),
 * advanceFifo queues a try for the next one if it was parked.
 * EndpointControl.fifoFrom is a cursor: every delivery before it is
 * finished, so finding the first unfinished one never walks the history.
 */

/** What the controls need of a loaded delivery. */
export interface ControlledDelivery {
  deliveryId: string;
  endpointId: string;
  appId: string;
  status: 'PENDING' | 'SENDING' | 'SUCCEEDED' | 'FAILED' | 'CANCELED' | 'SCHEDULED';
  scheduled: boolean;
  disabled: boolean;
  rateLimit: number | null;
  ordering: 'NONE' | 'FIFO';
}

export const hasControls = (d: ControlledDelivery): boolean => d.rateLimit !== null || d.ordering === 'FIFO';

/** Whether a job would send (startAttempt's rules): the controls only hold back tries that would. */
function wouldSend(job: DeliveryJob, d: ControlledDelivery): boolean {
  if (d.disabled) return false;
  return (
    job.trigger === 'MANUAL' ||
    ((d.status === 'PENDING' || d.status === 'SENDING' || d.status === 'SCHEDULED') && d.scheduled)
  );
}

export interface ControlsOutcome {
  /** The jobs that go on to start their tries. */
  go: DeliveryJob[];
  /** FIFO endpoints whose turn may have ended in this claim: call advanceFifo once the claim's tries are started. */
  advance: string[];
  /** The earliest time a job put back becomes ready, to wake the worker then. */
  wakeAt?: Date;
}

/**
 * Applies the controls to a claim's jobs, in its transaction. Jobs of
 * endpoints without controls pass through untouched.
 */
export async function applyControls(
  { queue, rateLimitMarginMs }: { queue: DeliveryQueue; rateLimitMarginMs: number },
  sql: SqlExecutor,
  jobs: DeliveryJob[],
  loadedById: Map<string, ControlledDelivery>,
): Promise<ControlsOutcome> {
  const go: DeliveryJob[] = [];
  const advance = new Set<string>();
  const requeue: RequeuedTry[] = [];
  const limited: { job: DeliveryJob; d: ControlledDelivery }[] = [];
  for (const job of jobs) {
    const d = loadedById.get(job.deliveryId);
    if (!d || !hasControls(d)) {
      go.push(job);
      continue;
    }
    const fifo = d.ordering === 'FIFO';
    if (fifo && !job.ordered) {
      // Queued before the endpoint became FIFO, or by the domain (which
      // does not know the tier): into the FIFO tier first.
      requeue.push({ job, tenant: d.appId, ordered: true });
      continue;
    }
    if (!wouldSend(job, d)) {
      // startAttempt settles it without sending; the turn may pass on.
      go.push(job);
      if (fifo) advance.add(d.endpointId);
      continue;
    }
    // A delivery already started (its worker was lost) finishes its turn.
    if (fifo && job.trigger === 'SCHEDULED' && d.status === 'PENDING' && !(await fifoGoes(queue, sql, job, d)))
      continue;
    if (d.rateLimit !== null) limited.push({ job, d });
    else go.push(job);
  }
  let wakeAt: Date | undefined;
  if (limited.length) {
    const waiting = await takeRate(sql, limited, RATE_WINDOW_MS + rateLimitMarginMs);
    for (const { job, d } of limited) {
      const at = waiting.get(job.id);
      if (at === undefined) go.push(job);
      else {
        requeue.push({ job, tenant: d.appId, ordered: d.ordering === 'FIFO', startAfter: at });
        if (!wakeAt || at < wakeAt) wakeAt = at;
      }
    }
    const scheduled = requeue.filter((r) => r.startAfter && r.job.trigger === 'SCHEDULED');
    if (scheduled.length) {
      // So the delivery shows when its next try is due.
      await sql.query({
        name: 'dispatch_controls_next_attempt',
        text: `UPDATE "Delivery" d SET "nextAttemptAt" = t.at
               FROM unnest($1::text[], $2::timestamptz[]) AS t(id, at)
               WHERE d.id = t.id AND d."nextAttemptAt" IS NOT NULL`,
        values: [scheduled.map((r) => r.job.deliveryId), scheduled.map((r) => r.startAfter)],
      });
    }
  }
  await queue.requeue(sql, requeue);
  return { go, advance: [...advance], ...(wakeAt ? { wakeAt } : {}) };
}

/** FIFO: whether this try's delivery is next; if not, parks it behind the one that is. */
async function fifoGoes(queue: DeliveryQueue, sql: SqlExecutor, job: DeliveryJob, d: ControlledDelivery) {
  const first = await firstUnfinished(sql, d.endpointId);
  const cursor = fifoCursor(first?.id ?? null, d.deliveryId);
  if (cursor !== first?.from) await setFifoCursor(sql, d.endpointId, cursor);
  const turn = fifoTurn(d.deliveryId, first?.id ?? null);
  if (turn.go) return true;
  await queue.complete(sql, [fenceOf(job)]);
  await sql.query({
    name: 'dispatch_fifo_park',
    text: `UPDATE "Delivery" SET "nextAttemptAt" = NULL, "heldById" = $2, "updatedAt" = now() WHERE id = $1`,
    values: [d.deliveryId, turn.heldBy],
  });
  return false;
}

interface FirstUnfinished {
  id: string;
  appId: string;
  /** The cursor it was found from. */
  from: string | null;
  /** PENDING with no try queued: held back, waiting for its turn. */
  parked: boolean;
  /** Scheduled tries it has had. */
  tries: number;
}

async function firstUnfinished(sql: SqlExecutor, endpointId: string): Promise<FirstUnfinished | undefined> {
  const { rows } = await sql.query<FirstUnfinished>({
    name: 'dispatch_fifo_first',
    text: `WITH c AS (SELECT (SELECT "fifoFrom" FROM "EndpointControl" WHERE "endpointId" = $1) AS "from")
           SELECT d.id, d."appId", c."from",
                  (d.status = 'PENDING' AND d."nextAttemptAt" IS NULL AND d."heldById" IS NOT NULL) AS parked,
                  (SELECT count(*)::int FROM "Attempt" a WHERE a."deliveryId" = d.id AND a.trigger = 'SCHEDULED') AS tries
           FROM c, "Delivery" d
           WHERE d."endpointId" = $1 AND d.id >= COALESCE(c."from", '') AND d.status IN ('PENDING', 'SENDING')
           ORDER BY d.id LIMIT 1`,
    values: [endpointId],
  });
  return rows[0];
}

async function setFifoCursor(sql: SqlExecutor, endpointId: string, cursor: string): Promise<void> {
  await sql.query({
    name: 'dispatch_fifo_cursor',
    text: `INSERT INTO "EndpointControl" ("endpointId", "fifoFrom") VALUES ($1, $2)
           ON CONFLICT ("endpointId") DO UPDATE SET "fifoFrom" = EXCLUDED."fifoFrom"`,
    values: [endpointId, cursor],
  });
}

/**
 * FIFO: after a delivery's turn ended, queues a try for the next one when it
 * was parked (a try still queued for it needs no help). Runs in the
 * transaction of the claim or finish of the endpoint's one active try.
 */
export async function advanceFifo(queue: DeliveryQueue, sql: SqlExecutor, endpointId: string): Promise<Date | null> {
  const first = await firstUnfinished(sql, endpointId);
  if (!first) return null;
  if (first.id !== first.from) await setFifoCursor(sql, endpointId, first.id);
  if (!first.parked) return null;
  const woken = await sql.query({
    name: 'dispatch_fifo_wake',
    // It waited last for the delivery right before it (parked earlier, it named the first one unfinished then).
    text: `UPDATE "Delivery" d SET "nextAttemptAt" = now(), "updatedAt" = now(),
             "heldById" = COALESCE((SELECT p.id FROM "Delivery" p WHERE p."endpointId" = $2 AND p.id < $1
                                    ORDER BY p.id DESC LIMIT 1), d."heldById")
           WHERE d.id = $1 AND d.status = 'PENDING' AND d."nextAttemptAt" IS NULL`,
    values: [first.id, endpointId],
  });
  if (!woken.rowCount) return null;
  await queue.enqueue(sql, [
    {
      deliveryId: first.id,
      endpointId,
      trigger: 'SCHEDULED',
      try: first.tries + 1,
      tenant: first.appId,
      ordered: true,
    },
  ]);
  return new Date();
}

/**
 * Rate limit: grants the tries that fit the endpoints' windows, in the
 * claim's transaction; returns, for each job that must wait, when to ask again.
 */
async function takeRate(
  sql: SqlExecutor,
  limited: { job: DeliveryJob; d: ControlledDelivery }[],
  windowMs: number,
): Promise<Map<string, Date>> {
  const byEndpoint = new Map<string, { limit: number; jobs: DeliveryJob[] }>();
  for (const { job, d } of limited) {
    const entry = byEndpoint.get(d.endpointId) ?? { limit: d.rateLimit!, jobs: [] };
    entry.jobs.push(job);
    byEndpoint.set(d.endpointId, entry);
  }
  const ids = [...byEndpoint.keys()];
  // The database's clock, one for every worker process.
  const { rows } = await sql.query<{
    endpointId: string;
    sent: number[] | null;
    pausedUntil: number | null;
    now: number;
  }>({
    name: 'dispatch_rate_read',
    text: `SELECT e.id AS "endpointId", c.sent,
                  (extract(epoch FROM c."pausedUntil" AT TIME ZONE 'UTC') * 1000)::float8 AS "pausedUntil",
                  (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now
           FROM unnest($1::text[]) AS e(id) LEFT JOIN "EndpointControl" c ON c."endpointId" = e.id`,
    values: [ids],
  });
  const waiting = new Map<string, Date>();
  const logs: { id: string; sent: number[] }[] = [];
  for (const row of rows) {
    const { limit, jobs } = byEndpoint.get(row.endpointId)!;
    const plan = planRate({
      sent: row.sent ?? [],
      now: row.now,
      limit,
      want: jobs.length,
      windowMs,
      pausedUntil: row.pausedUntil,
    });
    jobs.slice(plan.granted).forEach((job, k) => {
      waiting.set(job.id, new Date(plan.retryAt[k]!));
    });
    if (plan.granted > 0) logs.push({ id: row.endpointId, sent: plan.sent });
  }
  if (logs.length) {
    await sql.query({
      name: 'dispatch_rate_write',
      text: `INSERT INTO "EndpointControl" ("endpointId", sent)
             SELECT l.id, ARRAY(SELECT jsonb_array_elements_text(l.sent)::float8)
             FROM jsonb_to_recordset($1::jsonb) AS l(id text, sent jsonb)
             ON CONFLICT ("endpointId") DO UPDATE SET sent = EXCLUDED.sent`,
      values: [JSON.stringify(logs)],
    });
  }
  return waiting;
}

/**
 * A 429 with Retry-After from a rate-limited endpoint: its next tries wait
 * that long (at most MAX_PAUSE_MS); the 429 try itself is retried by its
 * schedule. In the transaction that records the try.
 */
export async function pauseEndpoint(sql: SqlExecutor, endpointId: string, retryAfterMs: number | undefined) {
  const ms = pauseMs(retryAfterMs);
  if (ms === null) return;
  await sql.query({
    name: 'dispatch_rate_pause',
    text: `INSERT INTO "EndpointControl" ("endpointId", "pausedUntil") VALUES ($1, (clock_timestamp() AT TIME ZONE 'UTC') + $2 * interval '1 millisecond')
           ON CONFLICT ("endpointId") DO UPDATE
           SET "pausedUntil" = GREATEST(COALESCE("EndpointControl"."pausedUntil", EXCLUDED."pausedUntil"), EXCLUDED."pausedUntil")`,
    values: [endpointId, ms],
  });
}
