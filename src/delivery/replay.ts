import type pg from 'pg';
import type { Job } from 'pg-boss';
import { inTransaction } from '../domain/context.ts';
import { type DeliveryQueue, REPLAY_QUEUE, type ReplayJob } from './queue.ts';

/** Deliveries queued per transaction, so a large replay neither holds locks long nor builds one huge insert. */
const BATCH = 500;

/**
 * replayMessages' background work: each delivery the replay matched
 * (ReplayDelivery, chosen when it was asked for) gets one manual try, unless
 * it has a try pending by now or no longer has a status the replay takes.
 * Each batch marks its deliveries PENDING, records on ReplayDelivery which
 * were queued and which skipped, and queues the tries, in one transaction;
 * ReplayDelivery rows not yet marked are the cursor, so a crash midway
 * resumes (pg-boss runs the job again) without queueing anything twice.
 */
export async function runReplayJob(
  deps: { pool: pg.Pool; queue: DeliveryQueue; queued: () => void },
  job: Job<ReplayJob>,
): Promise<void> {
  const { replayId } = job.data;
  for (;;) {
    const { batch, queued } = await inTransaction(deps.pool, async (sql) => {
      const { rows } = await sql.query<{ deliveryId: string; status: string | null }>(
        `SELECT rd."deliveryId", r.status
         FROM "ReplayDelivery" rd JOIN "Replay" r ON r.id = rd."replayId"
         WHERE rd."replayId" = $1 AND rd.queued IS NULL
         ORDER BY rd."deliveryId" LIMIT ${BATCH}
         FOR UPDATE OF rd SKIP LOCKED`,
        [replayId],
      );
      if (rows.length === 0) return { batch: 0, queued: 0 };
      const ids = rows.map((r) => r.deliveryId);
      const statuses = rows[0]!.status ? [rows[0]!.status] : ['SUCCEEDED', 'FAILED'];
      const marked = await sql.query<{ id: string; endpointId: string }>(
        `UPDATE "Delivery" d SET status = 'PENDING', "updatedAt" = now()
         FROM "Endpoint" e
         WHERE d.id = ANY($1::text[]) AND d.status = ANY($2::"DeliveryStatus"[]) AND e.id = d."endpointId" AND NOT e.disabled
         RETURNING d.id, d."endpointId"`,
        [ids, statuses],
      );
      await sql.query(
        `UPDATE "ReplayDelivery" SET queued = ("deliveryId" = ANY($3::text[]))
         WHERE "replayId" = $1 AND "deliveryId" = ANY($2::text[])`,
        [replayId, ids, marked.rows.map((r) => r.id)],
      );
      await deps.queue.enqueue(
        sql,
        // A large replay sinks its own tries' priority (createFairPriority), not its app's other traffic.
        marked.rows.map((r) => ({
          deliveryId: r.id,
          endpointId: r.endpointId,
          trigger: 'MANUAL' as const,
          tenant: replayId,
        })),
      );
      return { batch: rows.length, queued: marked.rows.length };
    });
    if (queued) deps.queued();
    if (batch < BATCH) break;
  }
  await inTransaction(deps.pool, async (sql) => {
    // Rows another run of this job still holds are its to finish.
    const left = await sql.query(`SELECT 1 FROM "ReplayDelivery" WHERE "replayId" = $1 AND queued IS NULL LIMIT 1`, [
      replayId,
    ]);
    if (left.rowCount === 0)
      await sql.query(`UPDATE "Replay" SET "finishedAt" = now() WHERE id = $1 AND "finishedAt" IS NULL`, [replayId]);
  });
  await deps.queue.boss.complete(REPLAY_QUEUE, { id: job.id, retryCount: job.retryCount });
}
