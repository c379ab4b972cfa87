import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { type Db, PgBoss } from 'pg-boss';
import { notifyChannelSql } from 'pg-boss/dist/plans.js';
import type { NewDelivery, SqlExecutor } from '../domain/context.ts';
import type { Logger } from '../logger.ts';

/**
 * The delivery queue: the "DeliveryJob" table in Dispatch's own schema.
 *
 * One job is one try of one delivery. A retry is a new job with a later
 * `runAt`, inserted in the transaction that records the failed try, so a slow
 * or failing endpoint never holds a worker while it waits. A worker claims
 * ready jobs in the transaction that starts their tries, holds a lease on
 * each while it sends (renewed by heartbeats), and deletes the job in the
 * statement that records the try. A lease that runs out means the worker was
 * lost: the job is queued again and its next run closes the attempt it left.
 *
 * It replaced pg-boss for deliveries (docs/benchmarks.md): pg-boss's job
 * rows, its fetch with group concurrency and its completion cost more
 * PostgreSQL time per delivery than everything else together. pg-boss still
 * runs the background work: recoverEndpoint's jobs.
 */

export const QUEUE_SCHEMA = 'pgboss';
export const RECOVER_QUEUE = 'dispatch-recover';
/** NOTIFY channel: deliveries were queued (payload: the id of the process that queued them). */
export const DELIVERY_CHANNEL = 'dispatch_delivery';

/** A claimed job is held this long without a heartbeat; then it counts as lost. */
export const JOB_LEASE_SECONDS = 10;

/** Claims take this transaction-scoped advisory lock, so the per-endpoint limit holds across processes. */
const CLAIM_LOCK = 72_707_370;

/** A recover job that fails (database unavailable) is run again by pg-boss this often. */
const RECOVER_RETRY_LIMIT = 10;

export type Trigger = 'SCHEDULED' | 'MANUAL';

export interface DeliveryJob {
  /** The job's row id (a bigint, as text). */
  id: string;
  deliveryId: string;
  endpointId: string;
  trigger: Trigger;
  /** For scheduled tries: which try of the schedule this is, from 1. */
  try: number | null;
  /** Times claimed, this run included: more than 1 means an earlier run did not finish. */
  runs: number;
}

/** Who holds a job: its id and the run that claimed it (a job taken over has a higher run). */
export interface JobFence {
  id: string;
  runs: number;
}

export const fenceOf = (job: DeliveryJob): JobFence => ({ id: job.id, runs: job.runs });

export interface RecoverJob {
  endpointId: string;
  since: string;
  until: string;
}

/** A delivery try to queue. */
export interface QueuedTry {
  deliveryId: string;
  endpointId: string;
  trigger: Trigger;
  try?: number;
  /** Not before this time; now when absent. */
  startAfter?: Date;
}

const statementNames = new Map<string, string>();

/**
 * A name for one of pg-boss's statements run in Dispatch's transactions
 * (inserting a recover job), so each connection parses and plans it once.
 */
function named(
  text: string,
  values: unknown[] | undefined,
): string | { name: string; text: string; values: unknown[] } {
  if (!values?.length) return text;
  let name = statementNames.get(text);
  if (!name) {
    name = `pgboss_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return { name, text, values };
}

/** pg-boss's view of a connection: a transaction's client becomes a `db` option. */
function asBossDb(sql: SqlExecutor): Db {
  return {
    executeSql: (text, values) => {
      const statement = named(text, values);
      return typeof statement === 'string' ? sql.query(text, values) : sql.query(statement);
    },
  };
}

export interface QueueOptions {
  url: string;
  pool: pg.Pool;
  logger: Logger;
  /** Run pg-boss maintenance (expiring lost recover jobs): worker processes do. */
  supervise: boolean;
  /** Seconds between maintenance passes. */
  superviseIntervalSeconds: number;
  /**
   * After this many claims this process vacuums the job table (0: never;
   * autovacuum only). Each try leaves two dead rows (its lease and its
   * delete); autovacuum comes by at most once a minute, and meanwhile every
   * claim scans the dead rows: at 3,500 tries/s that cost a fifth of
   * PostgreSQL's CPU per delivery.
   */
  vacuumAfterJobs?: number;
}

/** How often a worker process checks whether the job table is due a vacuum. */
const VACUUM_CHECK_MS = 1_000;

export interface QueueDepth {
  ready: number;
  deferred: number;
  active: number;
}

export interface DeliveryQueue {
  /** pg-boss, for recover jobs. */
  boss: PgBoss;
  /** The LISTEN channel pg-boss notifies when a recover job is queued. */
  bossChannel: string;
  /** This process's id in DELIVERY_CHANNEL payloads, so it can ignore its own. */
  instanceId: string;
  /** Queues tries in the transaction of `sql` (one statement for all of them). */
  enqueue(sql: SqlExecutor, tries: QueuedTry[]): Promise<void>;
  /** Tells worker processes that tries were queued; call after the commit. Coalesced: one NOTIFY in flight at a time. */
  announce(): void;
  enqueueRecover(sql: SqlExecutor, job: RecoverJob): Promise<void>;
  /**
   * Claims up to `max` ready jobs in the transaction of `sql`, at most
   * `endpointLimit` in flight per endpoint counting every process's leases;
   * the caller starts their tries in the same transaction.
   */
  claim(sql: SqlExecutor, max: number, endpointLimit: number): Promise<DeliveryJob[]>;
  /** Deletes the jobs still held by these fences; returns how many were. */
  complete(sql: SqlExecutor, fences: JobFence[]): Promise<number>;
  /** Renews the leases of running jobs. */
  touch(fences: JobFence[]): Promise<void>;
  /** A run that failed without recording its try (the database was unavailable): run it again after a backoff. */
  release(fence: JobFence, error: string): Promise<void>;
  /** Queues again the jobs whose lease ran out (their worker is gone); returns how many. */
  requeueLost(): Promise<number>;
  depth(): Promise<QueueDepth>;
  stop(): Promise<void>;
}

export async function startQueue(options: QueueOptions): Promise<DeliveryQueue> {
  const { pool, logger } = options;
  const boss = new PgBoss({
    connectionString: options.url,
    schema: QUEUE_SCHEMA,
    application_name: 'dispatch-queue',
    max: 2,
    supervise: options.supervise,
    superviseIntervalSeconds: options.superviseIntervalSeconds,
    monitorIntervalSeconds: options.superviseIntervalSeconds,
    schedule: false,
    // Workers listen on the channel themselves (see engine.ts).
    useListenNotify: false,
  });
  boss.on('error', (error: unknown) =>
    logger.warn('queue: pg-boss error', error instanceof Error ? error.message : error),
  );
  await boss.start();
  const settings = {
    notify: true,
    retryLimit: RECOVER_RETRY_LIMIT,
    retryDelay: 1,
    retryBackoff: true,
    retryDelayMax: 60,
    expireInSeconds: 15 * 60,
  };
  if (await boss.getQueue(RECOVER_QUEUE)) await boss.updateQueue(RECOVER_QUEUE, settings);
  else
    await boss.createQueue(RECOVER_QUEUE, settings).catch(async (error) => {
      // Another process created it at the same moment.
      if (!(await boss.getQueue(RECOVER_QUEUE))) throw error;
    });
  const { rows } = await boss.getDb().executeSql(`SELECT ${notifyChannelSql(QUEUE_SCHEMA)} AS channel`);
  const bossChannel = rows[0].channel as string;
  const instanceId = randomUUID();

  // One NOTIFY in flight; announcements made meanwhile go out as one more.
  let notifying = false;
  let again = false;
  const announce = () => {
    if (notifying) {
      again = true;
      return;
    }
    notifying = true;
    again = false;
    pool
      .query({
        name: 'dispatch_delivery_announce',
        text: `SELECT pg_notify('${DELIVERY_CHANNEL}', $1)`,
        values: [instanceId],
      })
      .catch((error: unknown) => {
        // Workers poll as well; a lost announcement only delays.
        logger.warn('queue: could not announce queued deliveries', error instanceof Error ? error.message : error);
      })
      .finally(() => {
        notifying = false;
        if (again) announce();
      });
  };

  // Claims since this process last vacuumed the job table.
  let claimedSinceVacuum = 0;
  let vacuuming: Promise<void> | undefined;
  let vacuumFailed = false;
  const vacuumAfter = options.vacuumAfterJobs ?? 0;
  const vacuum = async () => {
    claimedSinceVacuum = 0;
    try {
      // SKIP_LOCKED: another process vacuuming it already is as good.
      await pool.query('VACUUM (SKIP_LOCKED) "DeliveryJob"');
      vacuumFailed = false;
    } catch (error) {
      if (!vacuumFailed)
        logger.warn('queue: could not vacuum the job table', error instanceof Error ? error.message : error);
      vacuumFailed = true;
    }
  };
  const vacuumTimer =
    vacuumAfter > 0
      ? setInterval(() => {
          if (vacuuming || claimedSinceVacuum < vacuumAfter) return;
          vacuuming = vacuum().finally(() => {
            vacuuming = undefined;
          });
        }, VACUUM_CHECK_MS)
      : undefined;
  vacuumTimer?.unref();

  return {
    boss,
    bossChannel,
    instanceId,
    announce,
    async enqueue(sql, tries) {
      if (tries.length === 0) return;
      await sql.query({
        name: 'dispatch_jobs_enqueue',
        text: `INSERT INTO "DeliveryJob" ("deliveryId", "endpointId", trigger, try, "runAt")
               SELECT d, e, t::"AttemptTrigger", n, COALESCE(r, now())
               FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::timestamptz[]) AS j(d, e, t, n, r)`,
        values: [
          tries.map((t) => t.deliveryId),
          tries.map((t) => t.endpointId),
          tries.map((t) => t.trigger),
          tries.map((t) => t.try ?? null),
          tries.map((t) => t.startAfter ?? null),
        ],
      });
    },
    async enqueueRecover(sql, job) {
      await boss.insert(RECOVER_QUEUE, [{ data: job }], { db: asBossDb(sql) });
    },
    async claim(sql, max, endpointLimit) {
      await sql.query({
        name: 'dispatch_jobs_claim_lock',
        text: 'SELECT pg_advisory_xact_lock($1)',
        values: [CLAIM_LOCK],
      });
      // runAt is stored to the millisecond, rounded, so it is compared with
      // the time rounded the same way: a try queued this very millisecond is
      // ready. Endpoints at their limit are skipped in the scan, so a hanging
      // endpoint's backlog never fills the window; within the window, each
      // endpoint gets what its free slots allow, oldest first.
      const { rows } = await sql.query<DeliveryJob>({
        name: 'dispatch_jobs_claim',
        text: `WITH busy AS (
                 SELECT "endpointId", count(*) AS n FROM "DeliveryJob" WHERE "leaseUntil" IS NOT NULL GROUP BY "endpointId"
               ), ready AS (
                 SELECT id, "endpointId", "runAt" FROM "DeliveryJob"
                 WHERE "leaseUntil" IS NULL AND "runAt" <= LOCALTIMESTAMP(3)
                   AND "endpointId" NOT IN (SELECT "endpointId" FROM busy WHERE n >= $2)
                 ORDER BY "runAt" LIMIT $3
               ), chosen AS (
                 SELECT id FROM (
                   SELECT r.id, r."runAt", row_number() OVER (PARTITION BY r."endpointId" ORDER BY r."runAt", r.id) + COALESCE(b.n, 0) AS slot
                   FROM ready r LEFT JOIN busy b ON b."endpointId" = r."endpointId"
                 ) ranked
                 WHERE slot <= $2 ORDER BY "runAt", id LIMIT $1
               )
               UPDATE "DeliveryJob" j SET "leaseUntil" = now() + make_interval(secs => $4), runs = j.runs + 1
               FROM chosen WHERE j.id = chosen.id AND j."leaseUntil" IS NULL
               RETURNING j.id::text, j."deliveryId", j."endpointId", j.trigger, j.try, j.runs`,
        values: [max, endpointLimit, max * 4, JOB_LEASE_SECONDS],
      });
      claimedSinceVacuum += rows.length;
      return rows;
    },
    async complete(sql, fences) {
      if (fences.length === 0) return 0;
      const result = await sql.query({
        name: 'dispatch_jobs_complete',
        text: `DELETE FROM "DeliveryJob" j USING unnest($1::bigint[], $2::int[]) AS f(id, runs) WHERE j.id = f.id AND j.runs = f.runs`,
        values: [fences.map((f) => f.id), fences.map((f) => f.runs)],
      });
      return result.rowCount ?? 0;
    },
    async touch(fences) {
      if (fences.length === 0) return;
      await pool.query({
        name: 'dispatch_jobs_touch',
        text: `UPDATE "DeliveryJob" j SET "leaseUntil" = now() + make_interval(secs => $3)
               FROM unnest($1::bigint[], $2::int[]) AS f(id, runs) WHERE j.id = f.id AND j.runs = f.runs AND j."leaseUntil" IS NOT NULL`,
        values: [fences.map((f) => f.id), fences.map((f) => f.runs), JOB_LEASE_SECONDS],
      });
    },
    async release(fence, error) {
      // 1, 2, 4 … 60 s: a database that is down gets time to come back.
      await pool.query(
        `UPDATE "DeliveryJob" SET "leaseUntil" = NULL, "lastError" = $3,
           "runAt" = now() + make_interval(secs => least(60, power(2, greatest(runs - 1, 0))))
         WHERE id = $1 AND runs = $2`,
        [fence.id, fence.runs, error.slice(0, 1000)],
      );
    },
    async requeueLost() {
      const result = await pool.query(
        `UPDATE "DeliveryJob" SET "leaseUntil" = NULL, "runAt" = now(), "lastError" = 'its worker stopped renewing the lease'
         WHERE "leaseUntil" < now()`,
      );
      return result.rowCount ?? 0;
    },
    async depth() {
      const { rows } = await pool.query<QueueDepth>(
        `SELECT count(*) FILTER (WHERE "leaseUntil" IS NULL AND "runAt" <= LOCALTIMESTAMP(3))::int AS ready,
                count(*) FILTER (WHERE "leaseUntil" IS NULL AND "runAt" > LOCALTIMESTAMP(3))::int AS deferred,
                count(*) FILTER (WHERE "leaseUntil" IS NOT NULL)::int AS active
         FROM "DeliveryJob"`,
      );
      return rows[0]!;
    },
    async stop() {
      clearInterval(vacuumTimer);
      await vacuuming;
      await boss.stop({ graceful: false, close: true });
    },
  };
}

/** The tries of deliveries just created, now. */
export function triesOf(deliveries: NewDelivery[], manual: boolean): QueuedTry[] {
  return deliveries.map((d) => ({
    deliveryId: d.id,
    endpointId: d.endpointId,
    trigger: manual ? 'MANUAL' : 'SCHEDULED',
    ...(manual ? {} : { try: 1 }),
  }));
}
