import { createHash } from 'node:crypto';
import { PgBoss, type Db, type JobInsert } from 'pg-boss';
import { notifyChannelSql } from 'pg-boss/dist/plans.js';
import type { NewDelivery, SqlExecutor } from '../domain/context.ts';
import type { Logger } from '../logger.ts';

/**
 * The delivery queue: pg-boss in Dispatch's own PostgreSQL, schema `pgboss`.
 *
 * One job is one try of one delivery. A retry is a new job with `startAfter`,
 * inserted in the transaction that records the failed try, so a slow or
 * failing endpoint never holds a worker while it waits. Jobs are grouped by
 * endpoint, and pg-boss's group concurrency (counted in the database, across
 * every worker process) caps the tries in flight to one endpoint.
 */

export const QUEUE_SCHEMA = 'pgboss';
export const DELIVERY_QUEUE = 'dispatch-delivery';
export const RECOVER_QUEUE = 'dispatch-recover';

/** Longest per-attempt timeout an app may set (MAX_ATTEMPT_TIMEOUT_MS in domain/apps.ts), in seconds. */
const MAX_ATTEMPT_SECONDS = 60;

/**
 * A job that stays active this long was lost; pg-boss hands it to another
 * worker. A little above the longest attempt, so a live worker never loses
 * its job mid-send. Heartbeats notice a killed worker sooner.
 */
export const JOB_EXPIRE_SECONDS = MAX_ATTEMPT_SECONDS + 30;

/** A worker touches its jobs this often (pg-boss's minimum is 10 s); a silent job is retried after it. */
export const JOB_HEARTBEAT_SECONDS = 10;

/**
 * How often pg-boss may re-run a job whose worker died or whose handler threw
 * (database unavailable). These are not delivery retries: those follow the
 * app's schedule as new jobs.
 */
const JOB_RETRY_LIMIT = 10;

export type Trigger = 'SCHEDULED' | 'MANUAL';

export interface DeliveryJob {
  deliveryId: string;
  trigger: Trigger;
  /** For scheduled tries: which try of the schedule this is, from 1. */
  try?: number;
}

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
 * (insert, complete), so each connection parses and plans it once: they took
 * longer to plan than to run (docs/benchmarks.md). pg-boss builds a fixed set
 * of texts per queue and option set, so the names are few. Its fetch, on its
 * own pool, stays unnamed: a generic plan of it ran slower than planning it
 * each time saved.
 */
function named(text: string, values: unknown[] | undefined): string | { name: string; text: string; values: unknown[] } {
  if (!values?.length) return text;
  let name = statementNames.get(text);
  if (!name) {
    name = `pgboss_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return { name, text, values };
}

/** pg-boss's view of a connection: a transaction's client becomes a `db` option. */
export function asBossDb(sql: SqlExecutor): Db {
  return {
    executeSql: (text, values) => {
      const statement = named(text, values);
      return typeof statement === 'string' ? sql.query(text, values) : sql.query(statement);
    },
  };
}

export interface QueueOptions {
  url: string;
  logger: Logger;
  /** Run pg-boss maintenance (expiring lost jobs, deleting old ones): worker processes do. */
  supervise: boolean;
  /** Seconds between maintenance passes, which is how soon a lost job is noticed. */
  superviseIntervalSeconds: number;
}

export interface DeliveryQueue {
  boss: PgBoss;
  /** The LISTEN channel pg-boss notifies when a job becomes ready on a notify-enabled queue. */
  channel: string;
  /** Queues tries in the transaction of `sql` (one insert for all of them). */
  enqueue(sql: SqlExecutor, tries: QueuedTry[]): Promise<void>;
  enqueueRecover(sql: SqlExecutor, job: RecoverJob): Promise<void>;
  stop(): Promise<void>;
}

function toJob(entry: QueuedTry): JobInsert<DeliveryJob> {
  const data: DeliveryJob = { deliveryId: entry.deliveryId, trigger: entry.trigger };
  if (entry.try !== undefined) data.try = entry.try;
  return { data, group: { id: entry.endpointId }, ...(entry.startAfter ? { startAfter: entry.startAfter } : {}) };
}

export async function startQueue(options: QueueOptions): Promise<DeliveryQueue> {
  const boss = new PgBoss({
    connectionString: options.url,
    schema: QUEUE_SCHEMA,
    application_name: 'dispatch-queue',
    max: 4,
    supervise: options.supervise,
    superviseIntervalSeconds: options.superviseIntervalSeconds,
    monitorIntervalSeconds: options.superviseIntervalSeconds,
    schedule: false,
    // Workers listen on the channel themselves (see worker.ts); pg-boss's own
    // listener would only wake pg-boss workers, which Dispatch does not use.
    useListenNotify: false,
  });
  boss.on('error', (error: unknown) => options.logger.warn('queue: pg-boss error', error instanceof Error ? error.message : error));
  await boss.start();
  const common = { notify: true, retryLimit: JOB_RETRY_LIMIT, retryDelay: 1, retryBackoff: true, retryDelayMax: 60 };
  for (const [name, settings] of [
    [DELIVERY_QUEUE, { ...common, expireInSeconds: JOB_EXPIRE_SECONDS, heartbeatSeconds: JOB_HEARTBEAT_SECONDS }],
    [RECOVER_QUEUE, { ...common, expireInSeconds: 15 * 60 }],
  ] as const) {
    if (await boss.getQueue(name)) await boss.updateQueue(name, settings);
    else await boss.createQueue(name, settings).catch(async (error) => {
      // Another process created it at the same moment.
      if (!(await boss.getQueue(name))) throw error;
    });
  }
  const { rows } = await boss.getDb().executeSql(`SELECT ${notifyChannelSql(QUEUE_SCHEMA)} AS channel`);
  const channel = rows[0].channel as string;

  return {
    boss,
    channel,
    async enqueue(sql, tries) {
      if (tries.length === 0) return;
      await boss.insert(DELIVERY_QUEUE, tries.map(toJob), { db: asBossDb(sql) });
    },
    async enqueueRecover(sql, job) {
      await boss.insert(RECOVER_QUEUE, [{ data: job }], { db: asBossDb(sql) });
    },
    stop: () => boss.stop({ graceful: false, close: true }),
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
