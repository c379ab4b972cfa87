import type { Delivery, Message } from '../db/client.ts';
import { type DomainContext, inTransaction } from './context.ts';
import { DispatchError, notFound } from './errors.ts';
import { findMessage } from './messages.ts';

/** PostgreSQL's deadlock_detected: the transaction was chosen to break a deadlock, and may simply run again. */
const DEADLOCK = '40P01';

/**
 * Cancels the tries of a scheduled message that have not started: every
 * delivery still SCHEDULED becomes CANCELED and its first try's job is
 * deleted, in one transaction. A message with a delivery whose try started
 * (or that was never scheduled) is NOT_CANCELABLE; one canceled before
 * answers with nothing canceled. A portal token may cancel its own
 * recipient's messages, as it may resend them.
 */
export async function cancelScheduledMessage(
  ctx: DomainContext,
  input: { appId: string; messageId: string },
): Promise<{ message: Message; canceled: Delivery[] }> {
  const message = await findMessage(ctx, input.appId, input.messageId);
  if (!message) throw notFound('message');
  const deleteJobs = ctx.hooks.scheduledCanceled;
  if (!deleteJobs) throw new Error('the delivery engine is not running in this process');

  const cancel = () =>
    inTransaction(ctx.pool, async (sql) => {
      // The deliveries first, then their jobs: a worker fetching a due job
      // locks the job, then its delivery; the rare crossing is a deadlock
      // PostgreSQL breaks, and this runs again (see below).
      const { rows } = await sql.query<{ id: string; status: Delivery['status'] }>(
        `SELECT id, status FROM "Delivery" WHERE "messageId" = $1 ORDER BY id FOR UPDATE`,
        [message.id],
      );
      const scheduled = rows.filter((r) => r.status === 'SCHEDULED').map((r) => r.id);
      const started = rows.filter((r) => r.status !== 'SCHEDULED' && r.status !== 'CANCELED');
      if (scheduled.length === 0 && started.length > 0) {
        throw new DispatchError(
          'NOT_CANCELABLE',
          message.deliverAt
            ? `message ${message.uid} has no try left to cancel: its tries have started`
            : `message ${message.uid} was not scheduled (sent without deliverAt): its tries have started`,
          { messageId: message.uid, statuses: [...new Set(started.map((r) => r.status))] },
        );
      }
      if (scheduled.length === 0) return [];
      await sql.query(
        `UPDATE "Delivery" SET status = 'CANCELED', "nextAttemptAt" = NULL, "updatedAt" = now() WHERE id = ANY($1::text[])`,
        [scheduled],
      );
      await deleteJobs.call(ctx.hooks, sql, scheduled);
      return scheduled;
    });
  let ids: string[];
  try {
    ids = await cancel();
  } catch (error) {
    if ((error as { code?: string }).code !== DEADLOCK) throw error;
    ids = await cancel();
  }
  const canceled = await ctx.prisma.delivery.findMany({ where: { id: { in: ids } }, orderBy: { id: 'asc' } });
  return { message, canceled };
}
