import type pg from 'pg';
import type { Job, JobAttempt } from 'pg-boss';
import { inTransaction, type SqlExecutor } from '../domain/context.ts';
import { DEFAULT_ATTEMPT_TIMEOUT_MS } from '../domain/apps.ts';
import { activeSecrets } from '../domain/endpoints.ts';
import { newId } from '../domain/ids.ts';
import type { AttemptEvent, LiveBus } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { attemptDuration, attemptsTotal, endpointsDisabled, firstAttemptLatency } from './metrics.ts';
import { asBossDb, DELIVERY_QUEUE, type DeliveryJob, type DeliveryQueue, type QueuedTry, type Trigger } from './queue.ts';
import { DEFAULT_RETRY_SCHEDULE, nextRetryDelayMs, retryAfterDelayMs } from './retry.ts';
import type { Sender, SendResult } from './sender.ts';
import { signatureHeaders } from './signing.ts';

/**
 * One job: one try of one delivery. In three steps, so no transaction is
 * open while the receiver is being called:
 *
 * 1. start (one transaction): load the delivery, its message, endpoint and
 *    app; close tries a killed worker left SENDING; decide whether to send;
 *    record the Attempt (SENDING) and mark the Delivery SENDING.
 * 2. send: sign with every active secret and POST.
 * 3. finish (one transaction): complete the job, record the outcome on the
 *    Attempt, move the Delivery on (SUCCEEDED, PENDING with the next try
 *    queued, or FAILED) and keep the endpoint's failure record.
 *
 * Rules decided here (README, "Delivery"):
 * - A scheduled job only sends while its delivery waits for it (PENDING or
 *   SENDING with nextAttemptAt set); a manual attempt that succeeded in the
 *   meantime clears nextAttemptAt, which cancels the scheduled retry.
 * - A manual attempt is one try, never retried; when it fails the delivery
 *   stays PENDING if a scheduled retry is still due, else becomes FAILED.
 * - When the job runs and its endpoint is disabled, nothing is sent and the
 *   delivery becomes FAILED, so recoverEndpoint resends it once the endpoint
 *   is enabled again. A deleted endpoint takes its deliveries with it.
 */

export interface DeliverDeps {
  pool: pg.Pool;
  queue: DeliveryQueue;
  sender: Sender;
  live?: LiveBus | undefined;
  logger: Logger;
  /** An endpoint failing every attempt this long is disabled. */
  disableAfterSeconds: number;
  /** Called with the time a retry this process queued becomes due, to wake the worker then. */
  onRetryQueued?: (at: Date) => void;
  /** Settles successful tries in batches; without it each is settled in its own transaction. */
  settler?: SuccessSettler;
  /** Starts tries in batches; without it each starts in its own transaction. */
  starter?: AttemptStarter;
}

interface Loaded {
  deliveryId: string;
  status: 'PENDING' | 'SENDING' | 'SUCCEEDED' | 'FAILED' | 'CANCELED';
  nextAttemptAt: Date | null;
  deliveryCreatedAt: Date;
  attemptCount: number;
  appId: string;
  recipientId: string;
  messageId: string;
  endpointId: string;
  messageUid: string;
  eventType: string;
  data: unknown;
  messageCreatedAt: Date;
  url: string;
  headers: Record<string, string> | null;
  disabled: boolean;
  failingSince: Date | null;
  retrySchedule: number[];
  attemptTimeoutMs: number | null;
}

/** Error kind of an attempt whose worker died mid-send; it does not count as the endpoint failing. */
export const WORKER_LOST = 'worker_lost';

export async function runDeliveryJob(deps: DeliverDeps, job: Job<DeliveryJob>): Promise<void> {
  const { trigger } = job.data;
  const fence: JobAttempt = { id: job.id, retryCount: job.retryCount };
  const started = deps.starter ? await deps.starter.start(job, fence) : await inTransaction(deps.pool, (sql) => startAttempt(deps, sql, job, fence));
  for (const event of started.events) publish(deps, event);
  if (!started.send) return;
  const { loaded, attemptId, secrets } = started.send;

  const timestamp = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({ type: loaded.eventType, timestamp: loaded.messageCreatedAt.toISOString(), data: loaded.data });
  const result = await deps.sender.send({
    url: loaded.url,
    headers: {
      ...(loaded.headers ?? {}),
      ...signatureHeaders({ msgId: loaded.messageUid, timestamp, body, secrets }),
      'content-type': 'application/json',
    },
    body,
    timeoutMs: loaded.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
  });
  attemptDuration.observe(result.durationMs / 1000);
  attemptsTotal.inc({ outcome: result.ok ? 'succeeded' : (result.errorKind ?? 'failed'), trigger });

  const outcome: FinishInput = { job, fence, loaded, attemptId, trigger, result };
  const finished = result.ok && deps.settler
    ? await deps.settler.succeeded(outcome)
    : await inTransaction(deps.pool, (sql) => finishAttempt(deps, sql, outcome));
  if (finished.retryAt) deps.onRetryQueued?.(finished.retryAt);
  publish(deps, attemptEvent(loaded, attemptId, result.ok ? 'SUCCEEDED' : 'FAILED'));
}

function attemptEvent(loaded: Loaded, attemptId: string, status: AttemptEvent['status']): AttemptEvent {
  return { attemptId, appId: loaded.appId, recipientId: loaded.recipientId, messageId: loaded.messageId, endpointId: loaded.endpointId, status };
}

/**
 * Not awaited: the bus sends events in the order they were published, in
 * batches, and a try need not wait for the live feed's round trip.
 */
function publish(deps: DeliverDeps, event: AttemptEvent): void {
  if (!deps.live) return;
  deps.live.publishAttempt(event).catch((error: unknown) => {
    // The live feed is a view; a delivery never fails because of it.
    deps.logger.warn(`delivery: could not publish attempt ${event.attemptId} to the live feed`, error instanceof Error ? error.message : error);
  });
}

/** A delivery with what one try of it needs: message, endpoint, app settings. */
const LOAD_SELECT = `SELECT d.id AS "deliveryId", d.status, d."nextAttemptAt", d."createdAt" AS "deliveryCreatedAt", d."attemptCount",
            d."appId", d."recipientId", d."messageId", d."endpointId",
            m.uid AS "messageUid", m."eventType", m.data, m."createdAt" AS "messageCreatedAt",
            e.url, e.headers, e.disabled, e."failingSince",
            a."retrySchedule", a."attemptTimeoutMs"
     FROM "Delivery" d
     JOIN "Message" m ON m.id = d."messageId"
     JOIN "Endpoint" e ON e.id = d."endpointId"
     JOIN "App" a ON a.id = d."appId"`;

interface Started {
  events: AttemptEvent[];
  send?: { loaded: Loaded; attemptId: string; secrets: string[] };
}

// The hot statements are named (planned once per connection; planning cost
// as much as running them) and name their columns, so a migration that adds
// one does not invalidate a cached plan's result type.
async function startAttempt(deps: DeliverDeps, sql: SqlExecutor, job: Job<DeliveryJob>, fence: JobAttempt): Promise<Started> {
  const { deliveryId, trigger } = job.data;
  const complete = () => deps.queue.boss.complete(DELIVERY_QUEUE, fence, null, { db: asBossDb(sql) });
  const { rows } = await sql.query<Loaded>({
    name: 'dispatch_delivery_load',
    text: `${LOAD_SELECT} WHERE d.id = $1 FOR UPDATE OF d`,
    values: [deliveryId],
  });
  const loaded = rows[0];
  // Deleted with its endpoint, message or app (or purged by retention).
  if (!loaded) {
    await complete();
    return { events: [] };
  }

  const events: AttemptEvent[] = [];
  if (job.retryCount > 0) {
    // This job ran before and its worker vanished without finishing: the
    // attempt it left SENDING may or may not have reached the receiver.
    const lost = await sql.query<{ id: string }>(
      `UPDATE "Attempt" SET status = 'FAILED', "errorKind" = $3, error = $4, "finishedAt" = now()
       WHERE "deliveryId" = $1 AND trigger = $2 AND status = 'SENDING'
       RETURNING id`,
      [deliveryId, trigger, WORKER_LOST, 'the worker stopped during this attempt; it is tried again with the same webhook-id'],
    );
    for (const { id } of lost.rows) events.push(attemptEvent(loaded, id, 'FAILED'));
  }

  const waiting = (loaded.status === 'PENDING' || loaded.status === 'SENDING') && loaded.nextAttemptAt !== null;
  if (trigger === 'SCHEDULED' && !waiting) {
    await complete();
    return { events };
  }
  if (loaded.disabled) {
    await sql.query(
      `UPDATE "Delivery" SET status = 'FAILED', "nextAttemptAt" = NULL, "updatedAt" = now()
       WHERE id = $1 AND status IN ('PENDING', 'SENDING')`,
      [deliveryId],
    );
    await complete();
    return { events };
  }

  const secrets = await sql.query<{ id: string; secret: string; expiresAt: Date | null; endpointId: string; createdAt: Date }>({
    name: 'dispatch_delivery_secrets',
    text: `SELECT id, "endpointId", secret, "createdAt", "expiresAt" FROM "EndpointSecret" WHERE "endpointId" = $1 AND ("expiresAt" IS NULL OR "expiresAt" > now())`,
    values: [loaded.endpointId],
  });
  const attemptId = newId('Attempt');
  await sql.query({
    name: 'dispatch_attempt_start',
    text: `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, trigger, url)
     VALUES ($1, $2, $3, $4, $5, $6, 'SENDING', $7, $8)`,
    values: [attemptId, loaded.appId, loaded.recipientId, loaded.messageId, loaded.endpointId, deliveryId, trigger, loaded.url],
  });
  await sql.query({
    name: 'dispatch_delivery_sending',
    text: `UPDATE "Delivery" SET status = 'SENDING', "attemptCount" = "attemptCount" + 1, "lastAttemptAt" = now(), "updatedAt" = now()
     WHERE id = $1`,
    values: [deliveryId],
  });
  if (loaded.attemptCount === 0) firstAttemptLatency.observe((Date.now() - loaded.deliveryCreatedAt.getTime()) / 1000);
  events.push(attemptEvent(loaded, attemptId, 'SENDING'));
  return { events, send: { loaded, attemptId, secrets: activeSecrets(secrets.rows).map((s) => s.secret) } };
}

interface FinishInput {
  job: Job<DeliveryJob>;
  fence: JobAttempt;
  loaded: Loaded;
  attemptId: string;
  trigger: Trigger;
  result: SendResult;
}

/** An app's retry schedule: its own delays, or the default when it has none. */
export function scheduleOf(retrySchedule: readonly number[]): readonly number[] {
  return retrySchedule.length ? retrySchedule : DEFAULT_RETRY_SCHEDULE;
}

async function finishAttempt(deps: DeliverDeps, sql: SqlExecutor, input: FinishInput): Promise<{ retryAt?: Date }> {
  const { job, fence, loaded, attemptId, trigger, result } = input;
  await sql.query({
    name: 'dispatch_attempt_finish',
    text: `UPDATE "Attempt" SET status = $2, "responseStatusCode" = $3, "responseBody" = $4, "durationMs" = $5,
            error = $6, "errorKind" = $7, "finishedAt" = now()
     WHERE id = $1`,
    values: [attemptId, result.ok ? 'SUCCEEDED' : 'FAILED', result.statusCode ?? null, result.responseBody ?? null, result.durationMs,
      result.error ?? null, result.errorKind ?? null],
  });
  const completed = await deps.queue.boss.complete(DELIVERY_QUEUE, fence, null, { db: asBossDb(sql) });
  // The job was taken over (this worker was presumed dead): the attempt is
  // recorded, and the delivery is now the other worker's to move on.
  // (pg-boss's typings leave CommandResponse empty; `affected` is what it returns.)
  if ((completed as { affected?: number }).affected === 0) return {};

  const { rows } = await sql.query<{ status: Loaded['status']; nextAttemptAt: Date | null }>({
    name: 'dispatch_delivery_lock',
    text: `SELECT status, "nextAttemptAt" FROM "Delivery" WHERE id = $1 FOR UPDATE`,
    values: [loaded.deliveryId],
  });
  const current = rows[0];
  if (!current) return {};
  const gone = result.statusCode === 410;
  await recordEndpointHealth(deps, sql, loaded, result.ok, gone);

  if (result.ok) {
    await sql.query({
      name: 'dispatch_delivery_succeeded',
      text: `UPDATE "Delivery" SET status = 'SUCCEEDED', "nextAttemptAt" = NULL, "updatedAt" = now() WHERE id = $1`,
      values: [loaded.deliveryId],
    });
    return {};
  }

  let status: Loaded['status'];
  let nextAttemptAt: Date | null = null;
  let retry: QueuedTry | undefined;
  if (trigger === 'SCHEDULED') {
    const tryNumber = job.data.try ?? 1;
    const scheduled = gone ? null : nextRetryDelayMs({ schedule: scheduleOf(loaded.retrySchedule), attemptNumber: tryNumber });
    if (current.status === 'SUCCEEDED' || current.nextAttemptAt === null) {
      // A manual attempt succeeded meanwhile: nothing left to retry.
      status = current.status === 'SENDING' ? 'FAILED' : current.status;
    } else if (scheduled === null) {
      status = 'FAILED';
    } else {
      const delay = result.statusCode === 429 || result.statusCode === 503 ? retryAfterDelayMs(result.retryAfter, scheduled) : scheduled;
      nextAttemptAt = new Date(Date.now() + delay);
      status = 'PENDING';
      retry = { deliveryId: loaded.deliveryId, endpointId: loaded.endpointId, trigger: 'SCHEDULED', try: tryNumber + 1, startAfter: nextAttemptAt };
    }
  } else {
    nextAttemptAt = gone ? null : current.nextAttemptAt;
    const others = await sql.query(`SELECT 1 FROM "Attempt" WHERE "deliveryId" = $1 AND status = 'SENDING' AND id <> $2 LIMIT 1`, [
      loaded.deliveryId,
      attemptId,
    ]);
    status = others.rowCount ? 'SENDING' : nextAttemptAt ? 'PENDING' : 'FAILED';
  }
  await sql.query({
    name: 'dispatch_delivery_settle',
    text: `UPDATE "Delivery" SET status = $2, "nextAttemptAt" = $3, "updatedAt" = now() WHERE id = $1`,
    values: [loaded.deliveryId, status, nextAttemptAt],
  });
  if (retry) await deps.queue.enqueue(sql, [retry]);
  return retry?.startAfter ? { retryAt: retry.startAfter } : {};
}

export interface AttemptStarter {
  /** Starts a try (or settles a job with nothing to send), as startAttempt does in a transaction of its own. */
  start(job: Job<DeliveryJob>, fence: JobAttempt): Promise<Started>;
}

/**
 * Starts tries in batches, like the settler below: the jobs fetched while one
 * transaction runs start together in the next (one load, one secrets query,
 * one Attempt insert, one Delivery update). Only the plain case is batched:
 * a first run of its job, the endpoint enabled, the delivery waiting for this
 * try (or a manual one). Anything else (a job run again after its worker was
 * lost, a disabled endpoint, a delivery no longer waiting or gone, the same
 * delivery twice in a batch) starts alone through startAttempt, after the
 * batch, as does every job of a batch that fails.
 */
export function createAttemptStarter(deps: DeliverDeps): AttemptStarter {
  type Entry = { job: Job<DeliveryJob>; fence: JobAttempt; resolve: (started: Started) => void; reject: (error: unknown) => void };
  let queued: Entry[] = [];
  let flushing = false;

  const startAlone = (e: Entry) => inTransaction(deps.pool, (sql) => startAttempt(deps, sql, e.job, e.fence)).then(e.resolve, e.reject);

  async function startBatch(batch: Entry[]): Promise<Entry[]> {
    const alone: Entry[] = [];
    const started = await inTransaction(deps.pool, async (sql) => {
      const { rows } = await sql.query<Loaded>({
        name: 'dispatch_delivery_load_batch',
        text: `${LOAD_SELECT} WHERE d.id = ANY($1::text[]) ORDER BY d.id FOR UPDATE OF d`,
        values: [batch.map((e) => e.job.data.deliveryId)],
      });
      const loadedById = new Map(rows.map((row) => [row.deliveryId, row]));
      const seen = new Map<string, number>();
      for (const e of batch) seen.set(e.job.data.deliveryId, (seen.get(e.job.data.deliveryId) ?? 0) + 1);
      const plain: { entry: Entry; loaded: Loaded; attemptId: string }[] = [];
      for (const entry of batch) {
        const loaded = loadedById.get(entry.job.data.deliveryId);
        const waiting = loaded && (loaded.status === 'PENDING' || loaded.status === 'SENDING') && loaded.nextAttemptAt !== null;
        if (loaded && entry.job.retryCount === 0 && !loaded.disabled && (entry.job.data.trigger === 'MANUAL' || waiting) && seen.get(loaded.deliveryId) === 1) {
          plain.push({ entry, loaded, attemptId: newId('Attempt') });
        } else {
          alone.push(entry);
        }
      }
      if (plain.length === 0) return [];
      const secrets = await sql.query<{ id: string; secret: string; expiresAt: Date | null; endpointId: string; createdAt: Date }>({
        name: 'dispatch_delivery_secrets_batch',
        text: `SELECT id, "endpointId", secret, "createdAt", "expiresAt" FROM "EndpointSecret"
               WHERE "endpointId" = ANY($1::text[]) AND ("expiresAt" IS NULL OR "expiresAt" > now())`,
        values: [[...new Set(plain.map((p) => p.loaded.endpointId))]],
      });
      await sql.query({
        name: 'dispatch_attempts_start',
        text: `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, trigger, url)
               SELECT id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", 'SENDING', trigger::"AttemptTrigger", url
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                 AS t(id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", trigger, url)`,
        values: [
          plain.map((p) => p.attemptId),
          plain.map((p) => p.loaded.appId),
          plain.map((p) => p.loaded.recipientId),
          plain.map((p) => p.loaded.messageId),
          plain.map((p) => p.loaded.endpointId),
          plain.map((p) => p.loaded.deliveryId),
          plain.map((p) => p.entry.job.data.trigger),
          plain.map((p) => p.loaded.url),
        ],
      });
      await sql.query({
        name: 'dispatch_deliveries_sending',
        text: `UPDATE "Delivery" SET status = 'SENDING', "attemptCount" = "attemptCount" + 1, "lastAttemptAt" = now(), "updatedAt" = now()
               WHERE id = ANY($1::text[])`,
        values: [plain.map((p) => p.loaded.deliveryId)],
      });
      return plain.map((p) => ({
        ...p,
        secrets: activeSecrets(secrets.rows.filter((row) => row.endpointId === p.loaded.endpointId)).map((row) => row.secret),
      }));
    });
    for (const p of started) {
      if (p.loaded.attemptCount === 0) firstAttemptLatency.observe((Date.now() - p.loaded.deliveryCreatedAt.getTime()) / 1000);
      p.entry.resolve({ events: [attemptEvent(p.loaded, p.attemptId, 'SENDING')], send: { loaded: p.loaded, attemptId: p.attemptId, secrets: p.secrets } });
    }
    return alone;
  }

  async function flush() {
    flushing = true;
    try {
      while (queued.length) {
        const batch = queued.slice(0, SETTLE_BATCH);
        queued = queued.slice(SETTLE_BATCH);
        let alone: Entry[];
        try {
          alone = await startBatch(batch);
        } catch (error) {
          deps.logger.warn(`delivery: starting ${batch.length} tries together failed; starting each alone`, error instanceof Error ? error.message : error);
          alone = batch;
        }
        await Promise.all(alone.map(startAlone));
      }
    } finally {
      flushing = false;
    }
  }

  return {
    start(job, fence) {
      return new Promise((resolve, reject) => {
        queued.push({ job, fence, resolve, reject });
        if (!flushing) void flush();
      });
    },
  };
}

export interface SuccessSettler {
  /** Resolves once the try is recorded and its job completed. */
  succeeded(input: FinishInput): Promise<{ retryAt?: Date }>;
}

/** Most successful tries settled in one transaction. */
const SETTLE_BATCH = 100;

/**
 * Settles successful tries like a group commit: while one transaction is
 * settling, the tries that succeed meanwhile queue up and go together in the
 * next one (one Attempt update, one `complete` for all their jobs, one
 * Delivery update), so a busy worker pays a few statements per batch instead
 * of six per try, and an idle one settles a lone try at once, as before.
 * Failures keep their own transaction: they carry the retry rules. When a
 * batch cannot be settled whole (a job taken over by another worker, a
 * deadlock), each of its tries is settled alone, the way a failure is.
 */
export function createSuccessSettler(deps: DeliverDeps): SuccessSettler {
  let queued: { input: FinishInput; resolve: (value: { retryAt?: Date }) => void; reject: (error: unknown) => void }[] = [];
  let flushing = false;

  async function settleAlone(input: FinishInput) {
    return inTransaction(deps.pool, (sql) => finishAttempt(deps, sql, input));
  }

  async function settleBatch(batch: FinishInput[]): Promise<boolean> {
    return inTransaction(deps.pool, async (sql) => {
      await sql.query({
        name: 'dispatch_attempts_succeeded',
        text: `UPDATE "Attempt" a SET status = 'SUCCEEDED', "responseStatusCode" = r.code, "responseBody" = r.body, "durationMs" = r.ms,
                 error = NULL, "errorKind" = NULL, "finishedAt" = now()
               FROM unnest($1::text[], $2::int[], $3::text[], $4::int[]) AS r(id, code, body, ms)
               WHERE a.id = r.id`,
        values: [
          batch.map((b) => b.attemptId),
          batch.map((b) => b.result.statusCode ?? null),
          batch.map((b) => b.result.responseBody ?? null),
          batch.map((b) => b.result.durationMs),
        ],
      });
      const completed = await deps.queue.boss.complete(DELIVERY_QUEUE, batch.map((b) => b.fence), null, { db: asBossDb(sql) });
      // Some job was taken over: roll back and let each try sort itself out.
      if ((completed as { affected?: number }).affected !== batch.length) throw new BatchNotWhole();
      await sql.query({
        name: 'dispatch_deliveries_succeeded',
        text: `UPDATE "Delivery" SET status = 'SUCCEEDED', "nextAttemptAt" = NULL, "updatedAt" = now() WHERE id = ANY($1::text[])`,
        values: [batch.map((b) => b.loaded.deliveryId)],
      });
      const healed = [...new Set(batch.filter((b) => b.loaded.failingSince).map((b) => b.loaded.endpointId))];
      if (healed.length) {
        await sql.query(`UPDATE "Endpoint" SET "failingSince" = NULL WHERE id = ANY($1::text[]) AND "failingSince" IS NOT NULL`, [healed]);
      }
      return true;
    });
  }

  async function flush() {
    flushing = true;
    try {
      while (queued.length) {
        const batch = queued.slice(0, SETTLE_BATCH);
        queued = queued.slice(SETTLE_BATCH);
        try {
          await settleBatch(batch.map((b) => b.input));
          for (const b of batch) b.resolve({});
        } catch (error) {
          if (!(error instanceof BatchNotWhole)) {
            deps.logger.warn(`delivery: settling ${batch.length} successful tries together failed; settling each alone`, error instanceof Error ? error.message : error);
          }
          await Promise.all(batch.map((b) => settleAlone(b.input).then(b.resolve, b.reject)));
        }
      }
    } finally {
      flushing = false;
    }
  }

  return {
    succeeded(input) {
      return new Promise((resolve, reject) => {
        queued.push({ input, resolve, reject });
        if (!flushing) void flush();
      });
    },
  };
}

class BatchNotWhole extends Error {}

/**
 * failingSince starts at an endpoint's first failure and is cleared by any
 * success; a 410 disables the endpoint at once, and failing everything for
 * longer than disableAfterSeconds disables it too.
 */
async function recordEndpointHealth(deps: DeliverDeps, sql: SqlExecutor, loaded: Loaded, ok: boolean, gone: boolean): Promise<void> {
  if (ok) {
    if (loaded.failingSince) {
      await sql.query(`UPDATE "Endpoint" SET "failingSince" = NULL WHERE id = $1 AND "failingSince" IS NOT NULL`, [loaded.endpointId]);
    }
    return;
  }
  let reason: string | undefined;
  if (gone) {
    reason = 'the endpoint answered 410 Gone';
    endpointsDisabled.inc({ reason: 'gone' });
  } else if (loaded.failingSince && Date.now() - loaded.failingSince.getTime() >= deps.disableAfterSeconds * 1000) {
    reason = `every attempt failed since ${loaded.failingSince.toISOString()} (more than ${formatSeconds(deps.disableAfterSeconds)})`;
    endpointsDisabled.inc({ reason: 'failing' });
  }
  if (reason) {
    await sql.query(
      `UPDATE "Endpoint" SET disabled = true, "disabledReason" = $2, "disabledAt" = now(), "failingSince" = COALESCE("failingSince", now()),
              "updatedAt" = now()
       WHERE id = $1 AND NOT disabled`,
      [loaded.endpointId, reason],
    );
    deps.logger.info(`delivery: disabled endpoint ${loaded.endpointId}: ${reason}`);
  } else if (!loaded.failingSince) {
    await sql.query(`UPDATE "Endpoint" SET "failingSince" = now() WHERE id = $1 AND "failingSince" IS NULL`, [loaded.endpointId]);
  }
}

function formatSeconds(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} day${seconds === 86_400 ? '' : 's'}`;
  if (seconds % 3_600 === 0) return `${seconds / 3_600} h`;
  return `${seconds} s`;
}
