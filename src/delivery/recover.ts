import type pg from 'pg';
import type { Job } from 'pg-boss';
import { inTransaction } from '../domain/context.ts';
import { type OperationalQueue, recordOperationalEvent } from '../domain/operational-events.ts';
import { type DeliveryQueue, RECOVER_QUEUE, type RecoverJob } from './queue.ts';

/** Deliveries queued per transaction, so a large recovery neither holds locks long nor builds one huge insert. */
const BATCH = 500;

/**
 * recoverEndpoint's background work: every FAILED delivery of the endpoint
 * created in [since, until) gets a manual attempt. Each batch marks its
 * deliveries PENDING and queues their jobs in one transaction, so a crash
 * midway resumes (the job runs again) without queueing anything twice.
 */
export async function runRecoverJob(
  deps: { pool: pg.Pool; queue: DeliveryQueue; queued: () => void; hooks: OperationalQueue },
  job: Job<RecoverJob>,
): Promise<void> {
  const { endpointId, since, until } = job.data;
  // A cursor, not "while any are FAILED": a resent delivery can fail again before the loop ends.
  let after = '';
  let total = 0;
  for (;;) {
    const queued = await inTransaction(deps.pool, async (sql) => {
      const { rows } = await sql.query<{ id: string }>(
        `UPDATE "Delivery" SET status = 'PENDING', "updatedAt" = now()
         WHERE id IN (
           SELECT id FROM "Delivery"
           WHERE "endpointId" = $1 AND status = 'FAILED' AND "createdAt" >= $2 AND "createdAt" < $3 AND id > $4
           ORDER BY id LIMIT ${BATCH}
           FOR UPDATE SKIP LOCKED)
         RETURNING id`,
        [endpointId, since, until, after],
      );
      await deps.queue.enqueue(
        sql,
        // A large recovery sinks its own tries' priority (createFairPriority).
        rows.map((r) => ({ deliveryId: r.id, endpointId, trigger: 'MANUAL' as const, tenant: endpointId })),
      );
      // The last batch's transaction reports the whole recovery (once per job, should it run again).
      if (rows.length < BATCH) await recordOperationalEvent(sql, deps.hooks, recoveredEvent(job, total + rows.length));
      return rows.map((r) => r.id).sort();
    });
    total += queued.length;
    if (queued.length) deps.queued();
    if (queued.length < BATCH) break;
    after = queued.at(-1)!;
  }
  await deps.queue.boss.complete(RECOVER_QUEUE, { id: job.id, retryCount: job.retryCount });
}

/** recover.completed: every FAILED delivery of the window was queued again. */
function recoveredEvent(job: Job<RecoverJob>, queued: number) {
  const { endpointId, since, until } = job.data;
  return {
    type: 'recover.completed' as const,
    endpointId,
    onceKey: `recover.completed:${job.id}`,
    data: { since, until, queued },
  };
}
