import type pg from 'pg';
import { idFloorAt } from './ids.ts';

/**
 * Retention: messages (payloads), attempts and bulk replays older than the retention
 * setting are deleted in small batches, each its own short statement, so no
 * lock is held for long and the API and workers never wait behind a purge.
 */

export interface PurgeOptions {
  /** Rows created before this instant are purged. */
  olderThan: Date;
  /** Most messages (or attempts) deleted per statement. */
  batchSize?: number;
}

export interface PurgeCounts {
  messages: number;
  deliveries: number;
  attempts: number;
  /** Statements that deleted something. */
  batches: number;
}

export const DEFAULT_PURGE_BATCH_SIZE = 1000;

/**
 * Deletes what is older than `olderThan`: first attempts on their own (a
 * delivery still retrying keeps its message, but not its expired attempts),
 * then messages with their deliveries and attempts. A message with a delivery
 * still PENDING or SENDING is kept until that delivery settles: purging it
 * would lose a message Dispatch has promised to deliver.
 *
 * Ids sort by creation time, so `id < idFloorAt(...)` walks the primary key;
 * the createdAt test keeps the rule exact. SKIP LOCKED: a row a worker holds
 * is left for the next run rather than waited for.
 */
export async function purgeExpired(pool: pg.Pool, options: PurgeOptions): Promise<PurgeCounts> {
  const batchSize = options.batchSize ?? DEFAULT_PURGE_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  const counts: PurgeCounts = { messages: 0, deliveries: 0, attempts: 0, batches: 0 };

  const attemptFloor = idFloorAt('Attempt', options.olderThan);
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM "Attempt" WHERE id IN (
         SELECT id FROM "Attempt" WHERE id < $1 AND "createdAt" < $2
         ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)`,
      [attemptFloor, options.olderThan, batchSize],
    );
    if (!rowCount) break;
    counts.attempts += rowCount;
    counts.batches++;
    if (rowCount < batchSize) break;
  }

  const messageFloor = idFloorAt('Message', options.olderThan);
  // Keyset: messages kept (undelivered) below `after` are not scanned again.
  let after = '';
  for (;;) {
    const { rows } = await pool.query<{ messages: string; deliveries: string; attempts: string; last: string | null }>(
      `WITH batch AS (
         SELECT m.id FROM "Message" m
         WHERE m.id > $1 AND m.id < $2 AND m."createdAt" < $3
           AND NOT EXISTS (SELECT 1 FROM "Delivery" d WHERE d."messageId" = m.id AND d.status IN ('PENDING', 'SENDING', 'SCHEDULED'))
         ORDER BY m.id LIMIT $4 FOR UPDATE SKIP LOCKED
       ), gone_attempts AS (
         DELETE FROM "Attempt" a USING batch WHERE a."messageId" = batch.id RETURNING 1
       ), gone_deliveries AS (
         DELETE FROM "Delivery" d USING batch WHERE d."messageId" = batch.id RETURNING 1
       ), gone AS (
         DELETE FROM "Message" m USING batch WHERE m.id = batch.id RETURNING m.id
       )
       SELECT count(*) AS messages, max(id) AS last,
              (SELECT count(*) FROM gone_deliveries) AS deliveries,
              (SELECT count(*) FROM gone_attempts) AS attempts
       FROM gone`,
      [after, messageFloor, options.olderThan, batchSize],
    );
    const row = rows[0]!;
    const messages = Number(row.messages);
    if (messages === 0 || row.last === null) break;
    counts.messages += messages;
    counts.deliveries += Number(row.deliveries);
    counts.attempts += Number(row.attempts);
    counts.batches++;
    after = row.last;
    if (messages < batchSize) break;
  }

  // Bulk replays (replayMessages) of the same age, a few at a time: each takes
  // up to MAX_REPLAY_DELIVERIES ReplayDelivery rows with it.
  const replayFloor = idFloorAt('Replay', options.olderThan);
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM "Replay" WHERE id IN (
         SELECT id FROM "Replay" WHERE id < $1 AND "createdAt" < $2 ORDER BY id LIMIT ${REPLAYS_PER_BATCH} FOR UPDATE SKIP LOCKED)`,
      [replayFloor, options.olderThan],
    );
    if (!rowCount) break;
    counts.batches++;
    if (rowCount < REPLAYS_PER_BATCH) break;
  }
  return counts;
}

/** Replays deleted per statement by retention. */
const REPLAYS_PER_BATCH = 10;

/** Deletes the stat bins (Endpoint.stats) older than `olderThan`, as many short statements. */
export async function purgeEndpointStats(pool: pg.Pool, olderThan: Date, batchSize: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM "EndpointStat" WHERE ctid = ANY(ARRAY(
         SELECT ctid FROM "EndpointStat" WHERE bin < to_timestamp($1::float8 / 1000) AT TIME ZONE 'UTC' LIMIT $2))`,
      [olderThan.getTime(), batchSize],
    );
    deleted += rowCount ?? 0;
    if (!rowCount || rowCount < batchSize) return deleted;
  }
}

/**
 * Deletes the log's events written before `olderThan`, in batches, and
 * moves the horizon (LiveEventHorizon) to the last one deleted, so older
 * cursors answer CURSOR_EXPIRED. Walks the primary key from its start: the
 * old events are its first rows (xids grow with time).
 */
export async function purgeLiveEvents(pool: pg.Pool, olderThan: Date, batchSize: number): Promise<number> {
  let deleted = 0;
  for (;;) {
    const { rows } = await pool.query<{ deleted: string; xid: string | null; seq: string | null }>(
      `WITH batch AS (
         SELECT xid, seq FROM "LiveEvent" ORDER BY xid, seq LIMIT $2
       ), old AS (
         SELECT b.xid, b.seq FROM batch b JOIN "LiveEvent" e USING (xid, seq) WHERE e."createdAt" < $1
       ), gone AS (
         DELETE FROM "LiveEvent" e USING old WHERE e.xid = old.xid AND e.seq = old.seq RETURNING e.xid, e.seq
       ), last AS (
         SELECT xid, seq FROM gone ORDER BY xid DESC, seq DESC LIMIT 1
       ), horizon AS (
         INSERT INTO "LiveEventHorizon" (id, xid, seq) SELECT 1, xid, seq FROM last
         ON CONFLICT (id) DO UPDATE SET xid = EXCLUDED.xid, seq = EXCLUDED.seq
           WHERE ("LiveEventHorizon".xid, "LiveEventHorizon".seq) < (EXCLUDED.xid, EXCLUDED.seq)
       )
       SELECT (SELECT count(*) FROM gone)::text AS deleted, (SELECT xid::text FROM last) AS xid, (SELECT seq::text FROM last) AS seq`,
      [olderThan, batchSize],
    );
    const count = Number(rows[0]!.deleted);
    deleted += count;
    // A batch not wholly old reached the first event to keep.
    if (count < batchSize) return deleted;
  }
}

/**
 * Makes the space of purged rows reusable at once, so the tables stop
 * growing as soon as retention keeps their rows level: autovacuum would come
 * by within a minute or so, and meanwhile every insert took new pages.
 * SKIP_LOCKED: a table another vacuum is on is left to it.
 */
async function vacuumPurged(pool: pg.Pool): Promise<void> {
  await pool.query('VACUUM (SKIP_LOCKED) "Attempt", "Delivery", "Message", "LiveEvent"');
}

// Any constant shared by every Dispatch process: the advisory lock that makes
// one process purge at a time.
export const RETENTION_LOCK_KEY = 0x64_69_73_70; // "disp"

export interface RetentionSchedule {
  /** Runs one purge now unless another process holds the lock; null when it did. */
  runOnce(): Promise<PurgeCounts | null>;
  stop(): Promise<void>;
}

/**
 * Purges every `intervalMs` (first run after `firstRunAfterMs`) what is older
 * than `retentionMs`. Workers of many processes may all run this: a
 * session-level advisory lock lets one of them purge and the others skip.
 */
export function startRetentionSchedule(options: {
  pool: pg.Pool;
  retentionMs: number;
  intervalMs?: number;
  firstRunAfterMs?: number;
  batchSize?: number;
  onPurged?: (counts: PurgeCounts) => void;
  onError?: (error: unknown) => void;
}): RetentionSchedule {
  const intervalMs = options.intervalMs ?? 60 * 60 * 1000;
  let running: Promise<PurgeCounts | null> | undefined;
  let stopped = false;

  const runOnce = (): Promise<PurgeCounts | null> => {
    running ??= (async () => {
      const lockHolder = await options.pool.connect();
      // A connection whose unlock failed is closed, which releases the lock too.
      let broken: Error | undefined;
      try {
        const { rows } = await lockHolder.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [
          RETENTION_LOCK_KEY,
        ]);
        if (!rows[0]!.locked) return null;
        try {
          const counts = await purgeExpired(options.pool, {
            olderThan: new Date(Date.now() - options.retentionMs),
            batchSize: options.batchSize,
          });
          const olderThan = new Date(Date.now() - options.retentionMs);
          await purgeEndpointStats(options.pool, olderThan, options.batchSize ?? DEFAULT_PURGE_BATCH_SIZE);
          await purgeLiveEvents(options.pool, olderThan, options.batchSize ?? DEFAULT_PURGE_BATCH_SIZE);
          if (counts.batches > 0) await vacuumPurged(options.pool);
          options.onPurged?.(counts);
          return counts;
        } finally {
          await lockHolder.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK_KEY]).catch((error: Error) => {
            broken = error;
          });
        }
      } finally {
        lockHolder.release(broken);
      }
    })().finally(() => {
      running = undefined;
    });
    return running;
  };

  const tick = () => {
    if (stopped) return;
    runOnce().catch((error) => options.onError?.(error));
  };
  const first = setTimeout(tick, options.firstRunAfterMs ?? Math.min(intervalMs, 60_000));
  const every = setInterval(tick, intervalMs);
  first.unref();
  every.unref();

  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(every);
      await running?.catch(() => undefined);
    },
  };
}
