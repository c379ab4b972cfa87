import { createHash } from 'node:crypto';
import type pg from 'pg';
import { type Db, type JobInsert, PgBoss } from 'pg-boss';
import { notifyChannelSql, restoreJobs } from 'pg-boss/dist/plans.js';
import { inTransaction, type NewDelivery, type SqlExecutor } from '../domain/context.ts';
import type { Logger } from '../logger.ts';
import { currentTraceparent, untraced } from '../tracing.ts';

/**
 * The delivery queue: pg-boss, in the `pgboss` schema.
 *
 * One job is one try of one delivery, in the queue DELIVERY_QUEUE (its own
 * partition table). A retry is a new job with a later `startAfter`, queued in
 * the transaction that records the failed try, so a slow or failing endpoint
 * never holds a worker while it waits. A worker fetches ready jobs in the
 * transaction that starts their tries (pg-boss `fetch` with the `db` option),
 * keeps them alive with pg-boss heartbeats (`touch`, only for tries running
 * longer than a heartbeat interval) while it sends, and
 * deletes each job (`deleteJob`, fenced to the attempt it fetched) in the
 * transaction that records its try. A job whose heartbeat stops (its worker
 * was lost) is failed by pg-boss's supervisor and fetched again; its next run
 * closes the attempt it left.
 *
 * The group of a job is its endpoint: pg-boss's group concurrency keeps at
 * most DISPATCH_ENDPOINT_CONCURRENCY tries of one endpoint active. pg-boss
 * counts a group's active jobs in the fetch's own snapshot, so concurrent
 * fetches could each see room for the same slot; fetches of deliveries take
 * a transaction-scoped advisory lock, which makes the limit hold across
 * processes (measured in docs/benchmarks.md).
 *
 * Tries of FIFO endpoints carry the group tier FIFO_TIER, whose limit is
 * one active job: the claim and the finish of one such try never overlap
 * another's (src/delivery/controls.ts relies on it).
 *
 * Background work runs on pg-boss too: recoverEndpoint's jobs.
 */

export const QUEUE_SCHEMA = 'pgboss';
/** Every try of every delivery. */
export const DELIVERY_QUEUE = 'dispatch-try';
export const RECOVER_QUEUE = 'dispatch-recover';
/** replayMessages' background work. */
export const REPLAY_QUEUE = 'dispatch-replay';

/** The pg-boss group tier of tries of FIFO endpoints: at most one active per endpoint. */
export const FIFO_TIER = 'fifo';

/** A fetched job whose heartbeat is older than this is failed by pg-boss's supervisor and fetched again. */
export const JOB_HEARTBEAT_SECONDS = 10;

/** Fetches of deliveries take this transaction-scoped advisory lock, so the per-endpoint limit holds across processes. */
const FETCH_LOCK = 72_707_370;

/** A recover job that fails (database unavailable) is run again by pg-boss this often. */
const RECOVER_RETRY_LIMIT = 10;

/**
 * Runs of a try that fail without recording it (the database unavailable, a
 * lost worker) are retried by pg-boss with a backoff of 1, 2, 4 … 60 s; this
 * many times, which at 60 s apiece is about a week.
 */
const TRY_RETRY_LIMIT = 10_000;

/**
 * The queue partition is analyzed once this many jobs have been inserted or
 * deleted by this process since it last was (autovacuum's threshold, 10 % of
 * the table, comes far too late for a backlog that grows from empty: until
 * the statistics show it, pg-boss's fetch scans and sorts the whole
 * partition; docs/benchmarks.md), or ANALYZE_SCALE of the rows the last
 * ANALYZE counted, whichever is more: on a partition holding a large backlog
 * a few thousand jobs do not change the statistics, and each ANALYZE reads
 * a sample of the whole table (1.4 s a run at 200,000 jobs on a busy
 * machine, docs/benchmarks.md).
 */
const ANALYZE_AFTER_JOBS = 5_000;
const ANALYZE_SCALE = 0.1;
/** And at most this often. */
const ANALYZE_MIN_INTERVAL_MS = 5_000;
/** A little after the inserts that call for it, so it sees them committed. */
const ANALYZE_DELAY_MS = 300;

/**
 * Whether a partition's statistics call for ANALYZE: rows changed since the
 * last one (PostgreSQL's count, every process's and autovacuum's included)
 * reach ANALYZE_AFTER_JOBS, or ANALYZE_SCALE of the rows it counted when that
 * is more. Unknown counts (no statistics yet) call for it.
 */
export function statisticsStale({ rows, changed }: { rows: number; changed: number | null }): boolean {
  if (changed === null || rows < 0) return true;
  return changed >= Math.max(ANALYZE_AFTER_JOBS, rows * ANALYZE_SCALE);
}

/**
 * Keeps the statistics of the queue partition current: ANALYZE (a sample of
 * 30,000 rows) after every ANALYZE_AFTER_JOBS jobs this process inserted or
 * deleted, or ANALYZE_SCALE of the rows the last run counted (`run` returns
 * them) when that is more, not more often than ANALYZE_MIN_INTERVAL_MS,
 * never two at once. `run` itself skips an ANALYZE whose statistics are
 * current (statisticsStale), e.g. when another process or autovacuum just
 * ran one.
 */
export function createAnalyzer(
  run: (churn: number) => Promise<number | undefined>,
  onError: (error: unknown) => void,
  now = Date.now,
) {
  let churn = 0;
  let threshold = ANALYZE_AFTER_JOBS;
  let last = 0;
  let pending: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  const start = () => {
    pending = undefined;
    if (stopped) return;
    const noted = churn;
    churn = 0;
    last = now();
    running = run(noted)
      .then((rows) => {
        threshold = Math.max(ANALYZE_AFTER_JOBS, Math.round((rows ?? 0) * ANALYZE_SCALE));
      })
      .catch(onError)
      .finally(() => {
        running = undefined;
      });
  };
  return {
    /** Jobs inserted or deleted. */
    note(jobs: number) {
      churn += jobs;
      if (churn < threshold || pending || running || stopped) return;
      pending = setTimeout(start, Math.max(ANALYZE_DELAY_MS, last + ANALYZE_MIN_INTERVAL_MS - now()));
      pending.unref();
    },
    async stop() {
      stopped = true;
      if (pending) clearTimeout(pending);
      await running;
    },
  };
}

export type Trigger = 'SCHEDULED' | 'MANUAL';

/** A try's job data, short keys: it is stored and read once per try. */
interface TryData {
  /** The delivery. */
  d: string;
  /** Trigger: S(cheduled) or M(anual). */
  t: 'S' | 'M';
  /** For scheduled tries: which try of the schedule this is, from 1. */
  n?: number;
  /** Runs before this job existed (a try moved in by an upgrade while it was running). */
  r?: number;
  /** The W3C traceparent of the request that sent the message (tracing on). */
  p?: string;
}

export interface DeliveryJob {
  /** pg-boss's job id. */
  id: string;
  deliveryId: string;
  endpointId: string;
  trigger: Trigger;
  /** For scheduled tries: which try of the schedule this is, from 1. */
  try: number | null;
  /** Times run, this run included: more than 1 means an earlier run did not finish. */
  runs: number;
  /** pg-boss's retry count when fetched: fences settling to this run. */
  retryCount: number;
  /** Queued in FIFO_TIER (one active per endpoint). */
  ordered: boolean;
  /** The W3C traceparent of the request that sent the message (tracing on). */
  traceparent: string | undefined;
}

/** Who holds a job: its id and the run that fetched it (a job fetched again has a higher retry count). */
export interface JobFence {
  id: string;
  retryCount: number;
}

export const fenceOf = (job: DeliveryJob): JobFence => ({ id: job.id, retryCount: job.retryCount });

export interface RecoverJob {
  endpointId: string;
  since: string;
  until: string;
}

export interface ReplayJob {
  replayId: string;
}

/** A delivery try to queue. */
export interface QueuedTry {
  deliveryId: string;
  endpointId: string;
  trigger: Trigger;
  try?: number;
  /** Not before this time; now when absent. */
  startAfter?: Date;
  /** The job's id, when it must be known to find the job again (a scheduled send's first try: scheduledTryJobId). */
  jobId?: string;
  /** Runs this try had before (an upgrade moving a running try). */
  runs?: number;
  /** Whose try: the app. Its recent volume sets the job's priority (see createFairPriority). */
  tenant?: string;
  /** A try of a FIFO endpoint: queued in FIFO_TIER. */
  ordered?: boolean;
  /** The W3C traceparent its try's span continues (tracing on). */
  traceparent?: string | undefined;
}

const statementNames = new Map<string, string>();

/**
 * A name for one of pg-boss's statements run in Dispatch's transactions, so
 * each connection parses and plans it once (pg-boss builds the same text for
 * the same options).
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

/** A fetched job to queue again (see DeliveryQueue.requeue). */
export interface RequeuedTry {
  job: DeliveryJob;
  tenant: string;
  ordered: boolean;
  startAfter?: Date;
}

export interface QueueOptions {
  url: string;
  pool: pg.Pool;
  logger: Logger;
  /** Run pg-boss maintenance (failing jobs whose heartbeat stopped): worker processes do. */
  supervise: boolean;
  /** Seconds between maintenance passes. */
  superviseIntervalSeconds: number;
}

export interface QueueDepth {
  ready: number;
  deferred: number;
  active: number;
}

export interface DeliveryQueue {
  /** pg-boss. */
  boss: PgBoss;
  /** The LISTEN channel pg-boss notifies (payload: the queue's name) when jobs are ready. */
  bossChannel: string;
  /** Queues tries in the transaction of `sql` (one statement for all of them). */
  enqueue(sql: SqlExecutor, tries: QueuedTry[]): Promise<void>;
  enqueueRecover(sql: SqlExecutor, job: RecoverJob): Promise<void>;
  enqueueReplay(sql: SqlExecutor, job: ReplayJob): Promise<void>;
  /** Deletes the first-try jobs of these scheduled deliveries (scheduledTryJobId), in the transaction of `sql`; returns how many it deleted. */
  deleteScheduled(sql: SqlExecutor, deliveryIds: string[]): Promise<number>;
  /**
   * Fetches up to `max` ready jobs in the transaction of `sql`, at most
   * `endpointLimit` active per endpoint counting every process's, none of
   * the endpoints in `skip`; the caller starts their tries in the same
   * transaction.
   */
  claim(sql: SqlExecutor, max: number, endpointLimit: number, skip?: string[]): Promise<DeliveryJob[]>;
  /** Puts fetched jobs back, ready, as if never fetched (pg-boss `restore`), in the transaction that fetched them. */
  putBack(sql: SqlExecutor, jobs: DeliveryJob[]): Promise<void>;
  /**
   * Moves fetched jobs back into the queue as new jobs of the same try
   * (trigger, try number and runs kept, a run that did not start anything
   * not counted), ready at `startAfter` (now when absent), in the
   * transaction that fetched them: the delivery controls' wait, holding no
   * worker slot.
   */
  requeue(sql: SqlExecutor, moves: RequeuedTry[]): Promise<void>;
  /** Deletes the jobs still held by these fences; returns the ids of those that were. */
  complete(sql: SqlExecutor, fences: JobFence[]): Promise<string[]>;
  /** Heartbeat of running jobs. */
  touch(fences: JobFence[]): Promise<void>;
  /** A run that failed without recording its try (the database was unavailable): pg-boss runs it again after a backoff. */
  release(fence: JobFence, error: string): Promise<void>;
  depth(): Promise<QueueDepth>;
  /**
   * When each endpoint's oldest delivery waiting for a retry is
   * tried next (endpoints with none are absent): one probe of
   * WAITING_INDEX per endpoint, whatever the size of the queue.
   */
  nextScheduledTries(endpointIds: string[]): Promise<Map<string, Date>>;
  stop(): Promise<void>;
}

const tryJob = (t: QueuedTry, priority = 0): JobInsert<TryData> => {
  const data: TryData = { d: t.deliveryId, t: t.trigger === 'MANUAL' ? 'M' : 'S' };
  if (t.try != null) data.n = t.try;
  if (t.runs) data.r = t.runs;
  if (t.traceparent) data.p = t.traceparent;
  return {
    ...(t.jobId ? { id: t.jobId } : {}),
    data,
    group: t.ordered ? { id: t.endpointId, tier: FIFO_TIER } : { id: t.endpointId },
    ...(priority ? { priority } : {}),
    ...(t.startAfter ? { startAfter: t.startAfter } : {}),
  };
};

/** How fast a tenant's count of recent tries decays: halved every this many seconds. */
const FAIR_HALF_LIFE_SECONDS = 10;
const MAX_FAIR_TENANTS = 10_000;

/**
 * Fair fetch order across tenants, through pg-boss's priority (fetch takes
 * the highest first, then the oldest). Each process counts the tries each
 * tenant queued recently (a count that halves every FAIR_HALF_LIFE_SECONDS)
 * and gives a try the priority -floor(log2(1 + count)): a tenant sending
 * little keeps priority 0 or close to it, and a flood sinks its own tries
 * (20,000 in a burst: -14), so another tenant's new message is fetched
 * before the flood's backlog rather than after it. Priorities only order:
 * when workers have room, the backlog is sent as fast as without them.
 */
export function createFairPriority(now: () => number = Date.now) {
  const recent = new Map<string, { count: number; at: number }>();
  return (tenant: string | undefined): number => {
    if (tenant === undefined) return 0;
    const t = now();
    const seen = recent.get(tenant);
    const count = seen ? seen.count * 0.5 ** ((t - seen.at) / (FAIR_HALF_LIFE_SECONDS * 1000)) : 0;
    if (!seen && recent.size >= MAX_FAIR_TENANTS) recent.clear();
    recent.set(tenant, { count: count + 1, at: t });
    return -Math.floor(Math.log2(1 + count));
  };
}

export async function startQueue(options: QueueOptions): Promise<DeliveryQueue> {
  const { logger } = options;
  const boss = new PgBoss({
    connectionString: options.url,
    schema: QUEUE_SCHEMA,
    application_name: 'dispatch-queue',
    max: 3,
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
  await ensureQueue(boss, RECOVER_QUEUE, {
    notify: true,
    retryLimit: RECOVER_RETRY_LIMIT,
    retryDelay: 1,
    retryBackoff: true,
    retryDelayMax: 60,
    expireInSeconds: 15 * 60,
  });
  await ensureQueue(boss, REPLAY_QUEUE, {
    notify: true,
    retryLimit: RECOVER_RETRY_LIMIT,
    retryDelay: 1,
    retryBackoff: true,
    retryDelayMax: 60,
    expireInSeconds: 15 * 60,
  });
  await ensureQueue(
    boss,
    DELIVERY_QUEUE,
    {
      notify: true,
      heartbeatSeconds: JOB_HEARTBEAT_SECONDS,
      // Heartbeats keep a running try; this bounds one whose worker is
      // alive but stuck (attempts time out long before).
      expireInSeconds: 15 * 60,
      retryLimit: TRY_RETRY_LIMIT,
      retryDelay: 1,
      retryBackoff: true,
      retryDelayMax: 60,
    },
    { partition: true },
  );
  await moveUpgradedTries(boss, options.pool, logger);
  const { rows } = await boss.getDb().executeSql(`SELECT ${notifyChannelSql(QUEUE_SCHEMA)} AS channel`);
  const bossChannel = rows[0].channel as string;
  const fairPriority = createFairPriority();
  const deliveryTable = ((await boss.getQueue(DELIVERY_QUEUE)) as unknown as { table: string }).table;
  await ensureWaitingIndex(options.pool, deliveryTable);
  const analyzer = createAnalyzer(
    async (churn) => {
      // Other processes (and autovacuum) insert, delete and analyze too:
      // PostgreSQL's count of the rows changed since the last ANALYZE says
      // whether this one is needed (or this process's own count, when more:
      // PostgreSQL's lags by up to a second).
      const statistics = async () =>
        (
          await options.pool.query<{ rows: number; changed: number | null }>(
            `SELECT c.reltuples::float8 AS rows, s.n_mod_since_analyze::float8 AS changed
             FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = $1::regclass`,
            [`${QUEUE_SCHEMA}.${deliveryTable}`],
          )
        ).rows[0];
      const before = await statistics();
      if (before && !statisticsStale({ rows: before.rows, changed: Math.max(before.changed ?? churn, churn) }))
        return before.rows;
      await options.pool.query(`ANALYZE ${QUEUE_SCHEMA}.${deliveryTable}`);
      return (await statistics())?.rows;
    },
    (error) => logger.warn('queue: ANALYZE failed', error instanceof Error ? error.message : error),
  );

  const enqueue = async (sql: SqlExecutor, tries: QueuedTry[]) => {
    if (tries.length === 0) return;
    await boss.insert(
      DELIVERY_QUEUE,
      tries.map((t) => tryJob(t, fairPriority(t.tenant))),
      { db: asBossDb(sql), returnId: false },
    );
    analyzer.note(tries.length);
  };

  return {
    boss,
    bossChannel,
    enqueue,
    async enqueueRecover(sql, job) {
      await boss.insert(RECOVER_QUEUE, [{ data: job }], { db: asBossDb(sql) });
    },
    async enqueueReplay(sql, job) {
      await boss.insert(REPLAY_QUEUE, [{ data: job }], { db: asBossDb(sql) });
    },
    async deleteScheduled(sql, deliveryIds) {
      if (deliveryIds.length === 0) return 0;
      const result = await boss.deleteJob(DELIVERY_QUEUE, deliveryIds.map(scheduledTryJobId), { db: asBossDb(sql) });
      analyzer.note(deliveryIds.length);
      return (result as { affected?: number }).affected ?? 0;
    },
    async claim(sql, max, endpointLimit, skip) {
      await sql.query({ name: 'dispatch_fetch_lock', text: 'SELECT pg_advisory_xact_lock($1)', values: [FETCH_LOCK] });
      // A poll is no one's request: pg-boss's span of it would be a trace of its own each time.
      const jobs = await untraced(() =>
        boss.fetch<TryData>(DELIVERY_QUEUE, {
          batchSize: max,
          groupConcurrency: { default: endpointLimit, tiers: { [FIFO_TIER]: 1 } },
          ...(skip?.length ? { ignoreGroups: skip } : {}),
          db: asBossDb(sql),
        }),
      );
      return jobs.map((job) => ({
        id: job.id,
        deliveryId: job.data.d,
        endpointId: job.groupId!,
        trigger: job.data.t === 'M' ? 'MANUAL' : 'SCHEDULED',
        try: job.data.n ?? null,
        runs: job.retryCount + 1 + (job.data.r ?? 0),
        retryCount: job.retryCount,
        ordered: job.groupTier === FIFO_TIER,
        traceparent: job.data.p,
      }));
    },
    async putBack(sql, jobs) {
      if (jobs.length === 0) return;
      // pg-boss's own statement for this (its restore(), which work() uses
      // to put back jobs past localGroupConcurrency; not exported by PgBoss).
      await asBossDb(sql).executeSql(restoreJobs(QUEUE_SCHEMA, deliveryTable), [DELIVERY_QUEUE, jobs.map((j) => j.id)]);
    },
    async requeue(sql, moves) {
      if (moves.length === 0) return;
      await boss.deleteJob(
        DELIVERY_QUEUE,
        moves.map((m) => fenceOf(m.job)),
        { db: asBossDb(sql) },
      );
      await enqueue(
        sql,
        moves.map(({ job, tenant, ordered, startAfter }) => ({
          deliveryId: job.deliveryId,
          endpointId: job.endpointId,
          trigger: job.trigger,
          ...(job.try != null ? { try: job.try } : {}),
          // This run started nothing: the next one counts as the same.
          runs: job.runs - 1,
          tenant,
          ordered,
          ...(startAfter ? { startAfter } : {}),
        })),
      );
    },
    async complete(sql, fences) {
      if (fences.length === 0) return [];
      const result = await boss.deleteJob(DELIVERY_QUEUE, fences, { db: asBossDb(sql) });
      analyzer.note(fences.length);
      // The ids it deleted (pg-boss returns them beside the count, untyped).
      return (result as { settled?: string[] }).settled ?? [];
    },
    async touch(fences) {
      if (fences.length === 0) return;
      await boss.touch(DELIVERY_QUEUE, fences);
    },
    async release(fence, error) {
      await boss.fail(DELIVERY_QUEUE, fence, { message: error.slice(0, 1000) });
    },
    async depth() {
      const [stats] = await boss.getQueueStats(DELIVERY_QUEUE);
      if (!stats) return { ready: 0, deferred: 0, active: 0 };
      return { ready: stats.readyCount, deferred: stats.deferredCount, active: stats.activeCount };
    },
    async nextScheduledTries(endpointIds) {
      if (endpointIds.length === 0) return new Map();
      const { rows } = await options.pool.query<{ endpointId: string; at: Date }>({
        name: 'dispatch_next_scheduled_tries',
        text: nextScheduledTriesSql(deliveryTable),
        values: [endpointIds],
      });
      return new Map(rows.map((r) => [r.endpointId, r.at]));
    },
    async stop() {
      await analyzer.stop();
      await boss.stop({ graceful: false, close: true });
    },
  };
}

/**
 * Scheduled retries not yet running (pg-boss's created and retry states;
 * a retry is a scheduled try after the first). Their job data's `d` is the
 * delivery.
 */
const WAITING_RETRIES = `state < 'active' AND data->>'t' = 'S' AND data->>'n' <> '1'`;
/**
 * The waiting retries of each endpoint, by delivery id (ids sort by time, so
 * the first is the oldest delivery): what Endpoint.health's nextRetryAt
 * reads. Partial, so a first try (most of what is queued) costs it nothing;
 * a retry costs one index entry when queued, none when fetched or deleted
 * (docs/benchmarks.md).
 */
export const WAITING_INDEX = 'dispatch_try_retries_by_endpoint';

/**
 * The statement of nextScheduledTries on the queue's partition `table` ($1:
 * the endpoints' ids): the oldest delivery with a waiting retry, and
 * the time its row says it is tried next (pg-boss's start_after is the same
 * time, corrected for the clock skew between this process and PostgreSQL).
 */
export const nextScheduledTriesSql = (table: string) =>
  `SELECT e.id AS "endpointId", w."nextAttemptAt" AS at FROM unnest($1::text[]) AS e(id)
   CROSS JOIN LATERAL (
     SELECT d."nextAttemptAt" FROM ${QUEUE_SCHEMA}.${table} j JOIN "Delivery" d ON d.id = j.data->>'d'
     WHERE j.group_id = e.id AND ${WAITING_RETRIES.replace(/\b(state|data)\b/g, 'j.$1')}
       AND d.status = 'PENDING' AND d."nextAttemptAt" IS NOT NULL
     ORDER BY j.data->>'d' LIMIT 1) w`;

/**
 * Adds WAITING_INDEX to the queue's partition once (pg-boss creates the
 * table). Under the fetch lock, so processes starting together build it once;
 * inserts wait for the build, once, on the first start after an upgrade.
 */
async function ensureWaitingIndex(pool: pg.Pool, table: string): Promise<void> {
  const present = await pool.query(`SELECT to_regclass($1) IS NOT NULL AS present`, [
    `${QUEUE_SCHEMA}.${WAITING_INDEX}`,
  ]);
  if (present.rows[0].present) return;
  await inTransaction(pool, async (sql) => {
    await sql.query('SELECT pg_advisory_xact_lock($1)', [FETCH_LOCK]);
    await sql.query(
      `CREATE INDEX IF NOT EXISTS ${WAITING_INDEX} ON ${QUEUE_SCHEMA}.${table} (group_id, (data->>'d'))
       WHERE ${WAITING_RETRIES}`,
    );
  });
}

type QueueSettings = Parameters<PgBoss['createQueue']>[1];

async function ensureQueue(boss: PgBoss, name: string, settings: QueueSettings, fixed: QueueSettings = {}) {
  if (await boss.getQueue(name)) await boss.updateQueue(name, settings);
  else
    await boss.createQueue(name, { ...settings, ...fixed }).catch(async (error) => {
      // Another process created it at the same moment.
      if (!(await boss.getQueue(name))) throw error;
    });
}

/**
 * The upgrade from the own-queue engine: the migration that dropped
 * "DeliveryJob" kept its queued tries in dispatch_upgrade.queued_try; the
 * first process to start moves them into pg-boss, in one transaction with
 * dropping that table. A try that was running keeps its runs, so its next run
 * closes the attempt it may have left (worker_lost).
 */
async function moveUpgradedTries(boss: PgBoss, pool: pg.Pool, logger: Logger): Promise<void> {
  const present = await pool.query(`SELECT to_regclass('dispatch_upgrade.queued_try') IS NOT NULL AS present`);
  if (!present.rows[0].present) return;
  await inTransaction(pool, async (sql) => {
    await sql.query('SELECT pg_advisory_xact_lock($1)', [FETCH_LOCK]);
    // Read from the catalog through a snapshot, not the cache behind
    // to_regclass, which may not have seen another process drop it.
    const still = await sql.query(
      `SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'dispatch_upgrade' AND tablename = 'queued_try') AS present`,
    );
    if (still.rows[0].present) {
      const { rows } = await sql.query<{
        deliveryId: string;
        endpointId: string;
        trigger: Trigger;
        try: number | null;
        runAt: Date;
        runs: number;
      }>(`SELECT "deliveryId", "endpointId", trigger, try, "runAt", runs FROM dispatch_upgrade.queued_try`);
      const db = asBossDb(sql);
      for (let i = 0; i < rows.length; i += 1000) {
        const tries = rows.slice(i, i + 1000).map((r) => ({
          deliveryId: r.deliveryId,
          endpointId: r.endpointId,
          trigger: r.trigger,
          ...(r.try != null ? { try: r.try } : {}),
          startAfter: r.runAt,
          runs: r.runs,
        }));
        await boss.insert(DELIVERY_QUEUE, tries.map(tryJob), { db, returnId: false });
      }
      await sql.query('DROP TABLE dispatch_upgrade.queued_try');
      await sql.query('DROP SCHEMA IF EXISTS dispatch_upgrade');
      if (rows.length) logger.info(`queue: moved ${rows.length} queued tries of the earlier engine into pg-boss`);
    }
  });
}

/** The tries of deliveries just created: now, or at a scheduled message's deliverAt. */
export function triesOf(deliveries: NewDelivery[], manual: boolean): QueuedTry[] {
  return deliveries.map((d) => ({
    deliveryId: d.id,
    endpointId: d.endpointId,
    tenant: d.appId,
    trigger: manual ? 'MANUAL' : 'SCHEDULED',
    ...(manual ? {} : { try: 1 }),
    ...(d.deliverAt && !manual ? { startAfter: d.deliverAt, jobId: scheduledTryJobId(d.id) } : {}),
    // A resend or an operational event continues the trace of what made it.
    traceparent: d.traceparent ?? currentTraceparent(),
  }));
}

/**
 * The pg-boss job id (a UUID) of a scheduled send's first try, derived from
 * its delivery's id, so cancelScheduledMessage finds the job to delete
 * without storing its id anywhere.
 */
export function scheduledTryJobId(deliveryId: string): string {
  const h = createHash('sha256').update(`scheduled-try:${deliveryId}`).digest('hex');
  // Version 8 (custom) and the RFC 4122 variant bits.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
