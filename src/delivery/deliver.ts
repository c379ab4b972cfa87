import type { Attributes, Span } from '@opentelemetry/api';
import type pg from 'pg';
import { createGroupCommit } from '../db/group-commit.ts';
import { DEFAULT_ATTEMPT_TIMEOUT_MS } from '../domain/apps.ts';
import { CUSTOM_PLANS, inTransaction, type SqlExecutor } from '../domain/context.ts';
import { activeSecretsSql } from '../domain/endpoints.ts';
import { newId } from '../domain/ids.ts';
import { type OperationalQueue, recordOperationalEvent } from '../domain/operational-events.ts';
import type { AttemptEvent, LiveBus } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { failed, SpanKind, SpanStatusCode, startSpan, tracingOn, withSpan } from '../tracing.ts';
import { nextRetryDelayMs, parseRetryAfterMs, retryAfterDelayMs, scheduleOf } from '../webhooks/retry.ts';
import { signatureHeaders } from '../webhooks/signing.ts';
import { advanceFifo, applyControls, hasControls, pauseEndpoint } from './controls.ts';
import { attemptDuration, attemptsTotal, endpointsDisabled, firstAttemptLatency } from './metrics.ts';
import { type DeliveryJob, type DeliveryQueue, fenceOf, type JobFence, type QueuedTry, type Trigger } from './queue.ts';
import type { Sender, SendResult } from './sender.ts';

/**
 * One job: one try of one delivery. In three steps, so no transaction is
 * open while the receiver is being called:
 *
 * 1. fetch and start (one transaction for a batch of jobs): fetch the jobs,
 *    load each delivery, its message, endpoint and app; close tries a killed
 *    worker left SENDING; decide whether to send; record the Attempt
 *    (SENDING) and mark the Delivery SENDING.
 * 2. send: sign with every active secret and POST.
 * 3. finish: delete the job (pg-boss deleteJob), record the outcome on the Attempt, move the
 *    Delivery on (SUCCEEDED, PENDING with the next try queued, or FAILED)
 *    and keep the endpoint's failure record.
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
  /** An endpoint failing every attempt this long is reported (endpoint.failing), once per run of failures. */
  failingAfterSeconds: number;
  /** Queues the deliveries of operational events, in the transaction that records them. */
  hooks: OperationalQueue;
  /** Most tries in flight to one endpoint, across all worker processes. */
  endpointConcurrency: number;
  /** Added to the 1-second window of endpoints' rate limits. */
  rateLimitMarginMs: number;
  /** Called with the time a retry this process queued becomes due, to wake the worker then. */
  onRetryQueued?: (at: Date) => void;
  /** Settles successful tries in batches; without it each is settled in its own transaction. */
  settler?: SuccessSettler;
  /** Each workspace's share of this process's slots; without it, none is counted. */
  shares?: WorkspaceShares;
  /** Called when a workspace at its share has a try answered: the worker may fetch for it again. */
  onShareFreed?: () => void;
}

/**
 * A workspace's fair share of a worker process's slots: at most `limit`
 * tries of one workspace waiting on its endpoints at once here, so
 * endpoints of one customer that hang (or answer slowly) cannot hold the
 * slots every other customer needs. A try counts from its claim until its
 * endpoint answers (or the request fails); recording the answer holds the
 * try's worker slot a little longer, but not its workspace's share, so a
 * busy workspace with fast endpoints is not held to a share by the wait
 * for its own settle batches (docs/benchmarks.md, round five). A fetch
 * skips the endpoints of workspaces at their share (pg-boss ignoreGroups);
 * a fetched try over its workspace's share goes back to the queue, ready,
 * in the transaction that fetched it.
 */
export class WorkspaceShares {
  readonly running = new Map<string, number>();
  /**
   * Endpoints seen of each workspace. Kept after its tries end (up to
   * MAX_KNOWN_ENDPOINTS in all), so that when it reaches its share again the
   * fetch skips all of them: forgetting them with its last try made every
   * fetch while it was at its share meet them again and put them back
   * (~2,200 put-backs a bench run, all of one workspace at its share).
   */
  private readonly endpoints = new Map<string, Set<string>>();
  private known = 0;
  constructor(readonly limit: number) {}

  /** Endpoints not to fetch now: those of workspaces at their share. */
  skipped(): string[] {
    const skip: string[] = [];
    for (const [workspace, n] of this.running) if (n >= this.limit) skip.push(...(this.endpoints.get(workspace) ?? []));
    return skip;
  }
  /**
   * The most tries a fetch can take with none over a share: the least room
   * left among workspaces with tries in flight here (below their share; those
   * at it are skipped), and a whole share for the others.
   */
  headroom(): number {
    let room = this.limit;
    for (const n of this.running.values()) if (n < this.limit) room = Math.min(room, this.limit - n);
    return room;
  }
  /** The workspaces at their share now. */
  atShare(): string[] {
    const at: string[] = [];
    for (const [workspace, n] of this.running) if (n >= this.limit) at.push(workspace);
    return at;
  }
  private emptyUntil = 0;
  /** The workspaces at their share when a skipping fetch last found nothing: those the pause is for. */
  private emptyWorkspaces = new Set<string>();
  /** Skipping fetches in a row that found nothing. */
  private emptyStreak = 0;
  /**
   * A fetch skipping the endpoints of the workspaces at their share
   * (`skipped`, as they were when it began: tries answered meanwhile may have
   * taken them below it) found nothing: no other workspace has work ready.
   * For a pause, while the same workspaces are at their share, fetches are
   * held off (holdingOff): each such fetch reads every ready try of those
   * workspaces only to skip it (5-14 ms each with a few thousand ready,
   * docs/benchmarks.md), and every NOTIFY of a new message would run one.
   * The pause doubles with each such fetch in a row, from SKIPPING_PAUSE_MS
   * to SKIPPING_PAUSE_MAX_MS; new work of another workspace committed in
   * this process ends it at once (newWork). Returns when it ends.
   */
  foundNothing(now: number, skipped: string[]): number {
    this.emptyWorkspaces = new Set(skipped);
    this.emptyUntil = now + Math.min(SKIPPING_PAUSE_MAX_MS, SKIPPING_PAUSE_MS * 2 ** this.emptyStreak);
    if (this.emptyUntil - now < SKIPPING_PAUSE_MAX_MS) this.emptyStreak++;
    return this.emptyUntil;
  }
  /** A fetch skipping the workspaces at their share found work of others: the next pause starts short. */
  foundWork(): void {
    this.emptyStreak = 0;
  }
  /** Whether to hold off fetching now (see foundNothing). */
  holdingOff(now: number): boolean {
    if (this.emptyUntil <= now || this.emptyWorkspaces.size === 0) return false;
    const at = this.atShare();
    return at.length === this.emptyWorkspaces.size && at.every((w) => this.emptyWorkspaces.has(w));
  }
  /**
   * Deliveries of these apps were committed in this process. If one is not
   * of the workspaces the pause is for (those at their share when the
   * skipping fetch found nothing), or of an app not seen here, the pause
   * ends: there is work for the others. Returns whether it ended.
   */
  newWork(appIds: Iterable<string>, now: number): boolean {
    if (this.emptyUntil <= now) return false;
    for (const appId of appIds) {
      const workspace = this.appWorkspaces.get(appId);
      if (workspace === undefined || !this.emptyWorkspaces.has(workspace)) {
        this.emptyUntil = 0;
        this.emptyStreak = 0;
        return true;
      }
    }
    return false;
  }
  private readonly appWorkspaces = new Map<string, string>();
  seen(workspace: string, endpointId: string, appId?: string): void {
    if (appId !== undefined && this.appWorkspaces.get(appId) !== workspace) {
      if (this.appWorkspaces.size >= MAX_KNOWN_ENDPOINTS) this.appWorkspaces.clear();
      this.appWorkspaces.set(appId, workspace);
    }
    let set = this.endpoints.get(workspace);
    if (!set) {
      set = new Set();
      this.endpoints.set(workspace, set);
    }
    if (set.has(endpointId)) return;
    if (this.known >= MAX_KNOWN_ENDPOINTS) {
      this.endpoints.clear();
      this.known = 0;
      set = new Set();
      this.endpoints.set(workspace, set);
    }
    set.add(endpointId);
    this.known++;
  }
  start(workspace: string, endpointId: string, appId?: string): void {
    this.running.set(workspace, (this.running.get(workspace) ?? 0) + 1);
    this.seen(workspace, endpointId, appId);
  }
  /** A try of `workspace` ended; whether the workspace was at its share. */
  end(workspace: string): boolean {
    const before = this.running.get(workspace) ?? 1;
    const n = before - 1;
    if (n > 0) this.running.set(workspace, n);
    else this.running.delete(workspace);
    return before >= this.limit;
  }
}

/**
 * How long fetches pause after one that skipped the workspaces at their
 * share found nothing else ready, doubling with each such fetch in a row up
 * to SKIPPING_PAUSE_MAX_MS: another workspace's new try, committed by
 * another process, waits at most this much longer for a slot (one committed
 * in this process ends the pause).
 */
const SKIPPING_PAUSE_MS = 100;
const SKIPPING_PAUSE_MAX_MS = 400;

/** Endpoints (and, apart, apps) WorkspaceShares remembers the workspace of; past this it starts again. */
const MAX_KNOWN_ENDPOINTS = 100_000;

interface Loaded {
  deliveryId: string;
  status: 'PENDING' | 'SENDING' | 'SUCCEEDED' | 'FAILED' | 'CANCELED' | 'SCHEDULED';
  /** A scheduled try is due (nextAttemptAt is set); a manual success clears it. */
  scheduled: boolean;
  /** Milliseconds since the epoch. */
  deliveryCreatedMs: number;
  attemptCount: number;
  appId: string;
  workspaceId: string;
  recipientId: string;
  messageId: string;
  endpointId: string;
  messageUid: string;
  eventType: string;
  /** The message's data as PostgreSQL prints its jsonb: put into the body as it is, never parsed. */
  dataJson: string;
  /** Milliseconds since the epoch. */
  messageCreatedMs: number;
  url: string;
  headers: Record<string, string> | null;
  disabled: boolean;
  failingSince: Date | null;
  retrySchedule: number[];
  attemptTimeoutMs: number | null;
  /** The secrets that sign now, newest first. */
  secrets: string[];
  /** Tries per second; null: no limit. */
  rateLimit: number | null;
  ordering: 'NONE' | 'FIFO';
  /** FIFO: the delivery this one was held back behind. */
  heldById: string | null;
}

/** A delivery waits for a scheduled try: PENDING, SENDING, or SCHEDULED (a scheduled send's first), with nextAttemptAt set. */
const isWaiting = (loaded: Loaded) =>
  (loaded.status === 'PENDING' || loaded.status === 'SENDING' || loaded.status === 'SCHEDULED') && loaded.scheduled;

/** Error kind of an attempt whose worker died mid-send; it does not count as the endpoint failing. */
export const WORKER_LOST = 'worker_lost';

/** A claimed job, its try started (or settled with nothing to send) in the claim's transaction. */
export interface ClaimedTry {
  job: DeliveryJob;
  send?: { loaded: Loaded; attemptId: string };
}

/**
 * Claims up to `max` ready jobs and starts their tries, in one transaction:
 * a claimed job is never left without its try started. The plain case (a
 * first run of its job, the endpoint enabled, the delivery waiting for this
 * try, or a manual one) starts in a few statements for the whole batch; any
 * other job (run again after its worker was lost, a disabled endpoint, a
 * delivery no longer waiting or gone, the same delivery twice in a batch)
 * goes through startAttempt, one by one, in the same transaction.
 */
export async function claimTries(deps: DeliverDeps, max: number): Promise<ClaimedTry[]> {
  const claimed: ClaimedTry[] = [];
  // Each fetch takes at most the workspaces' headroom, so a try is seldom
  // fetched only to be put back (a workspace's endpoints not yet seen here
  // can still be). A put-back, or a full batch leaving a workspace of it
  // below its share, may mean more is ready for other workspaces: fetch
  // again, skipping the endpoints of those at their share. A full batch of
  // workspaces now all at their share is not followed by another round,
  // which would mostly meet their endpoints not seen yet and put them back.
  const { shares } = deps;
  if (shares?.holdingOff(Date.now())) return claimed;
  for (let round = 0; round < 4 && claimed.length < max; round++) {
    const want = Math.min(max - claimed.length, shares?.headroom() ?? max);
    const skipped = shares?.atShare() ?? [];
    const skipping = skipped.length > 0;
    const { tries, fetched, putBack, paced } = await claimRound(deps, want);
    claimed.push(...tries);
    if (skipping && fetched === 0 && shares) {
      // Only the workspaces at their share have work ready: try again after
      // a pause (a slot of theirs freeing, or new work of another workspace
      // committed here, ends it sooner).
      deps.onRetryQueued?.(new Date(shares.foundNothing(Date.now(), skipped)));
      break;
    }
    // Tries claimed by a skipping fetch are other workspaces' (a fetched try over its share went back).
    if (skipping && tries.length > 0) shares?.foundWork();
    // Rate-limited tries were granted for now: send them now, not after more rounds.
    if (paced) break;
    if (putBack > 0) continue;
    if (fetched < want) break;
    const workspaces = new Set(tries.flatMap((t) => (t.send ? [t.send.loaded.workspaceId] : [])));
    if (shares && workspaces.size > 0 && [...workspaces].every((w) => (shares.running.get(w) ?? 0) >= shares.limit))
      break;
  }
  return claimed;
}

async function claimRound(
  deps: DeliverDeps,
  max: number,
): Promise<{ tries: ClaimedTry[]; fetched: number; putBack: number; paced?: boolean }> {
  const events: AttemptEvent[] = [];
  const { shares } = deps;
  const over: { workspace: string; endpointId: string }[] = [];
  let fetchedCount = 0;
  let wakeAt: Date | undefined;
  let paced = false;
  const claimed = await inTransaction(
    deps.pool,
    async (sql) => {
      const fetched = await deps.queue.claim(sql, max, deps.endpointConcurrency, shares?.skipped());
      fetchedCount = fetched.length;
      if (fetched.length === 0) return [];
      const { rows } = await sql.query<Loaded>({
        name: 'dispatch_delivery_load_batch',
        text: `${LOAD_SELECT} WHERE d.id = ANY($1::text[]) ORDER BY d.id FOR UPDATE OF d`,
        values: [fetched.map((job) => job.deliveryId)],
      });
      const loadedById = new Map(rows.map((row) => [row.deliveryId, row]));
      let jobs = fetched;
      if (shares) {
        const taken = new Map<string, number>();
        const back: DeliveryJob[] = [];
        jobs = [];
        for (const job of fetched) {
          const workspace = loadedById.get(job.deliveryId)?.workspaceId;
          const n = workspace === undefined ? 0 : (shares.running.get(workspace) ?? 0) + (taken.get(workspace) ?? 0);
          if (workspace !== undefined && n >= shares.limit) {
            back.push(job);
            over.push({ workspace, endpointId: job.endpointId });
          } else {
            jobs.push(job);
            if (workspace !== undefined) taken.set(workspace, (taken.get(workspace) ?? 0) + 1);
          }
        }
        await deps.queue.putBack(sql, back);
      }
      let advance: string[] = [];
      if (jobs.some((job) => controlled(loadedById.get(job.deliveryId)))) {
        const controls = await applyControls(deps, sql, jobs, loadedById);
        jobs = controls.go;
        advance = controls.advance;
        paced = jobs.some((job) => loadedById.get(job.deliveryId)?.rateLimit != null);
        if (controls.wakeAt) wakeAt = controls.wakeAt;
      }
      const seen = new Map<string, number>();
      for (const job of jobs) seen.set(job.deliveryId, (seen.get(job.deliveryId) ?? 0) + 1);
      const plain: { job: DeliveryJob; loaded: Loaded; attemptId: string }[] = [];
      const alone: DeliveryJob[] = [];
      for (const job of jobs) {
        const loaded = loadedById.get(job.deliveryId);
        const waiting = loaded && isWaiting(loaded);
        if (
          loaded &&
          job.runs === 1 &&
          !loaded.disabled &&
          (job.trigger === 'MANUAL' || waiting) &&
          seen.get(job.deliveryId) === 1
        ) {
          plain.push({ job, loaded, attemptId: newId('Attempt') });
        } else {
          alone.push(job);
        }
      }
      const result: ClaimedTry[] = [];
      if (plain.length) {
        await sql.query({
          name: 'dispatch_attempts_start',
          text: `WITH attempt AS (
                 INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, trigger, url)
                 SELECT id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", 'SENDING', trigger::"AttemptTrigger", url
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                   AS t(id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", trigger, url)
               )
               UPDATE "Delivery" SET status = 'SENDING', "attemptCount" = "attemptCount" + 1, "lastAttemptAt" = now(), "updatedAt" = now()
               WHERE id = ANY($6::text[])`,
          values: [
            plain.map((p) => p.attemptId),
            plain.map((p) => p.loaded.appId),
            plain.map((p) => p.loaded.recipientId),
            plain.map((p) => p.loaded.messageId),
            plain.map((p) => p.loaded.endpointId),
            plain.map((p) => p.loaded.deliveryId),
            plain.map((p) => p.job.trigger),
            plain.map((p) => p.loaded.url),
          ],
        });
        for (const p of plain) {
          events.push(attemptEvent(p.loaded, p.attemptId, 'SENDING'));
          result.push({ job: p.job, send: { loaded: p.loaded, attemptId: p.attemptId } });
        }
      }
      for (const job of alone) {
        const started = await startAttempt(deps, sql, job);
        events.push(...started.events);
        result.push({ job, ...(started.send ? { send: started.send } : {}) });
      }
      for (const endpointId of advance) {
        const at = await advanceFifo(deps.queue, sql, endpointId);
        if (at && (!wakeAt || at < wakeAt)) wakeAt = at;
      }
      return result;
    },
    CUSTOM_PLANS,
  );
  if (wakeAt) deps.onRetryQueued?.(wakeAt);
  for (const c of claimed) {
    if (c.send) shares?.start(c.send.loaded.workspaceId, c.send.loaded.endpointId, c.send.loaded.appId);
    if (c.send && c.send.loaded.attemptCount === 0)
      firstAttemptLatency.observe((Date.now() - c.send.loaded.deliveryCreatedMs) / 1000);
  }
  for (const o of over) shares?.seen(o.workspace, o.endpointId);
  for (const event of events) publish(deps, event);
  return { tries: claimed, fetched: fetchedCount, putBack: over.length, ...(paced ? { paced } : {}) };
}

const controlled = (loaded: Loaded | undefined): boolean => loaded !== undefined && hasControls(loaded);

/** Sends a started try and records its outcome. */
export async function sendTry(deps: DeliverDeps, claimed: ClaimedTry): Promise<void> {
  if (!claimed.send) return;
  const workspace = claimed.send.loaded.workspaceId;
  let answered = false;
  // The try leaves its workspace's share once the endpoint has answered (or
  // failed to); recording it is not waiting on the customer's endpoint.
  const answer = () => {
    if (answered) return;
    answered = true;
    if (deps.shares?.end(workspace)) deps.onShareFreed?.();
  };
  try {
    await sendStarted(deps, claimed, claimed.send, answer);
  } finally {
    answer();
  }
}

async function sendStarted(
  deps: DeliverDeps,
  claimed: ClaimedTry,
  started: NonNullable<ClaimedTry['send']>,
  answered: () => void,
): Promise<void> {
  const { job } = claimed;
  const { loaded, attemptId } = started;
  // The try's span continues the trace of the request that sent the message (its job carries it).
  const span = tracingOn()
    ? startSpan('dispatch.attempt', {
        kind: SpanKind.CLIENT,
        traceparent: job.traceparent,
        root: true,
        attributes: tryAttributes(loaded, attemptId, job.trigger),
      })
    : undefined;
  try {
    await withSpan(span, () => sendAndRecord(deps, job, loaded, attemptId, span, answered));
  } catch (error) {
    failed(span, error);
    throw error;
  } finally {
    span?.end();
  }
}

function tryAttributes(loaded: Loaded, attemptId: string, trigger: Trigger): Attributes {
  let host: string | undefined;
  try {
    host = new URL(loaded.url).host;
  } catch {
    host = undefined;
  }
  return {
    'dispatch.attempt.id': attemptId,
    'dispatch.attempt.number': loaded.attemptCount + 1,
    'dispatch.attempt.trigger': trigger,
    'dispatch.delivery.id': loaded.deliveryId,
    'dispatch.endpoint.id': loaded.endpointId,
    'dispatch.app.id': loaded.appId,
    'dispatch.message.id': loaded.messageId,
    'dispatch.event_type': loaded.eventType,
    'dispatch.webhook.id': loaded.messageUid,
    'http.request.method': 'POST',
    // The host only: an endpoint's path and query may hold its own secrets.
    ...(host ? { 'server.address': host } : {}),
  };
}

async function sendAndRecord(
  deps: DeliverDeps,
  job: DeliveryJob,
  loaded: Loaded,
  attemptId: string,
  span: Span | undefined,
  answered: () => void,
): Promise<void> {
  const timestamp = Math.floor(Date.now() / 1000);
  const body = webhookBody(loaded);
  const result = await deps.sender.send({
    url: loaded.url,
    headers: {
      ...(loaded.headers ?? {}),
      ...signatureHeaders({ msgId: loaded.messageUid, timestamp, body, secrets: loaded.secrets }),
      'content-type': 'application/json',
    },
    body,
    timeoutMs: loaded.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
  });
  answered();
  attemptDuration.observe(result.durationMs / 1000);
  attemptsTotal.inc({ outcome: result.ok ? 'succeeded' : (result.errorKind ?? 'failed'), trigger: job.trigger });
  if (span) {
    span.setAttribute('dispatch.attempt.outcome', result.ok ? 'succeeded' : 'failed');
    span.setAttribute('dispatch.attempt.duration_ms', result.durationMs);
    if (result.statusCode != null) span.setAttribute('http.response.status_code', result.statusCode);
    if (!result.ok) {
      span.setAttribute('error.type', result.errorKind ?? 'failed');
      span.setStatus({ code: SpanStatusCode.ERROR, message: result.error ?? result.errorKind ?? 'failed' });
    }
  }

  const outcome: FinishInput = { job, fence: fenceOf(job), loaded, attemptId, trigger: job.trigger, result };
  const finished =
    // A FIFO delivery's finish passes the turn on (advanceFifo): not batched.
    result.ok && deps.settler && loaded.ordering !== 'FIFO'
      ? await deps.settler.succeeded(outcome)
      : await inTransaction(deps.pool, (sql) => finishAttempt(deps, sql, outcome), CUSTOM_PLANS);
  if (finished.retryAt) deps.onRetryQueued?.(finished.retryAt);
  publish(deps, attemptEvent(loaded, attemptId, result.ok ? 'SUCCEEDED' : 'FAILED'));
}

/**
 * The webhook's body, `{"type", "timestamp", "data"}`, with the data as
 * PostgreSQL prints the stored jsonb (valid JSON, keys in jsonb's order, a
 * space after each colon and comma), so it is never parsed in the worker.
 */
export function webhookBody(loaded: Pick<Loaded, 'eventType' | 'messageCreatedMs' | 'dataJson'>): string {
  return `{"type":${JSON.stringify(loaded.eventType)},"timestamp":"${new Date(loaded.messageCreatedMs).toISOString()}","data":${loaded.dataJson}}`;
}

function attemptEvent(loaded: Loaded, attemptId: string, status: AttemptEvent['status']): AttemptEvent {
  return {
    attemptId,
    appId: loaded.appId,
    recipientId: loaded.recipientId,
    messageId: loaded.messageId,
    endpointId: loaded.endpointId,
    status,
  };
}

/**
 * Not awaited: the bus sends events in the order they were published, in
 * batches, and a try need not wait for the live feed's round trip.
 */
function publish(deps: DeliverDeps, event: AttemptEvent): void {
  if (!deps.live) return;
  deps.live.publishAttempt(event).catch((error: unknown) => {
    // The live feed is a view; a delivery never fails because of it.
    deps.logger.warn(
      `delivery: could not publish attempt ${event.attemptId} to the live feed`,
      error instanceof Error ? error.message : error,
    );
  });
}

/** A delivery with what one try of it needs: message, endpoint, app settings. */
// Timestamps come as epoch milliseconds and data as jsonb's text: parsing a
// date or the data and printing them again for every try cost more than the
// rest of building a request.
const LOAD_SELECT = `SELECT d.id AS "deliveryId", d.status, d."nextAttemptAt" IS NOT NULL AS scheduled,
            (extract(epoch FROM d."createdAt") * 1000)::float8 AS "deliveryCreatedMs", d."attemptCount",
            d."appId", a."workspaceId", d."recipientId", d."messageId", d."endpointId",
            m.uid AS "messageUid", m."eventType", m.data::text AS "dataJson",
            (extract(epoch FROM m."createdAt") * 1000)::float8 AS "messageCreatedMs",
            e.url, e.headers, e.disabled, e."failingSince",
            a."retrySchedule", a."attemptTimeoutMs", ${activeSecretsSql('e.id')} AS secrets,
            e."rateLimit", e.ordering, d."heldById"
     FROM "Delivery" d
     JOIN "Message" m ON m.id = d."messageId"
     JOIN "Endpoint" e ON e.id = d."endpointId"
     JOIN "App" a ON a.id = d."appId"`;

interface Started {
  events: AttemptEvent[];
  send?: { loaded: Loaded; attemptId: string };
}

// The hot statements are named (planned once per connection; planning cost
// as much as running them) and name their columns, so a migration that adds
// one does not invalidate a cached plan's result type.
async function startAttempt(deps: DeliverDeps, sql: SqlExecutor, job: DeliveryJob): Promise<Started> {
  const { deliveryId, trigger } = job;
  const complete = () => deps.queue.complete(sql, [fenceOf(job)]);
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
  if (job.runs > 1) {
    // This job ran before and its worker vanished without finishing: the
    // attempt it left SENDING may or may not have reached the receiver.
    const lost = await sql.query<{ id: string }>(
      `UPDATE "Attempt" SET status = 'FAILED', "errorKind" = $3, error = $4, "finishedAt" = now()
       WHERE "deliveryId" = $1 AND trigger = $2 AND status = 'SENDING'
       RETURNING id`,
      [
        deliveryId,
        trigger,
        WORKER_LOST,
        'the worker stopped during this attempt; it is tried again with the same webhook-id',
      ],
    );
    for (const { id } of lost.rows) events.push(attemptEvent(loaded, id, 'FAILED'));
  }

  const waiting = isWaiting(loaded);
  if (trigger === 'SCHEDULED' && !waiting) {
    await complete();
    return { events };
  }
  if (loaded.disabled) {
    await sql.query(
      `UPDATE "Delivery" SET status = 'FAILED', "nextAttemptAt" = NULL, "updatedAt" = now()
       WHERE id = $1 AND status IN ('PENDING', 'SENDING', 'SCHEDULED')`,
      [deliveryId],
    );
    await complete();
    return { events };
  }

  const attemptId = newId('Attempt');
  await sql.query({
    name: 'dispatch_attempt_start',
    text: `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, trigger, url)
     VALUES ($1, $2, $3, $4, $5, $6, 'SENDING', $7, $8)`,
    values: [
      attemptId,
      loaded.appId,
      loaded.recipientId,
      loaded.messageId,
      loaded.endpointId,
      deliveryId,
      trigger,
      loaded.url,
    ],
  });
  await sql.query({
    name: 'dispatch_delivery_sending',
    text: `UPDATE "Delivery" SET status = 'SENDING', "attemptCount" = "attemptCount" + 1, "lastAttemptAt" = now(), "updatedAt" = now()
     WHERE id = $1`,
    values: [deliveryId],
  });
  events.push(attemptEvent(loaded, attemptId, 'SENDING'));
  return { events, send: { loaded, attemptId } };
}

interface FinishInput {
  job: DeliveryJob;
  fence: JobFence;
  loaded: Loaded;
  attemptId: string;
  trigger: Trigger;
  result: SendResult;
}

async function finishAttempt(deps: DeliverDeps, sql: SqlExecutor, input: FinishInput): Promise<{ retryAt?: Date }> {
  const { job, fence, loaded, attemptId, trigger, result } = input;
  await sql.query({
    name: 'dispatch_attempt_finish',
    text: `UPDATE "Attempt" SET status = $2, "responseStatusCode" = $3, "responseBody" = $4, "durationMs" = $5,
            error = $6, "errorKind" = $7, "finishedAt" = now()
     WHERE id = $1`,
    values: [
      attemptId,
      result.ok ? 'SUCCEEDED' : 'FAILED',
      result.statusCode ?? null,
      result.responseBody ?? null,
      result.durationMs,
      result.error ?? null,
      result.errorKind ?? null,
    ],
  });
  // The job was taken over (this worker was presumed dead): the attempt is
  // recorded, and the delivery is now the other worker's to move on.
  if ((await deps.queue.complete(sql, [fence])).length === 0) return {};

  const { rows } = await sql.query<{ status: Loaded['status']; nextAttemptAt: Date | null }>({
    name: 'dispatch_delivery_lock',
    text: `SELECT status, "nextAttemptAt" FROM "Delivery" WHERE id = $1 FOR UPDATE`,
    values: [loaded.deliveryId],
  });
  const current = rows[0];
  if (!current) return {};
  const gone = result.statusCode === 410;
  await recordEndpointHealth(deps, sql, loaded, result, gone);
  if (result.statusCode === 429 && loaded.rateLimit !== null && result.retryAfter)
    await pauseEndpoint(sql, loaded.endpointId, parseRetryAfterMs(result.retryAfter, Date.now()));

  if (result.ok) {
    await sql.query({
      name: 'dispatch_delivery_succeeded',
      text: `UPDATE "Delivery" SET status = 'SUCCEEDED', "nextAttemptAt" = NULL, "updatedAt" = now() WHERE id = $1`,
      values: [loaded.deliveryId],
    });
    return passTurn(deps, sql, loaded, 'SUCCEEDED', {});
  }

  let status: Loaded['status'];
  let nextAttemptAt: Date | null = null;
  let retry: QueuedTry | undefined;
  if (trigger === 'SCHEDULED') {
    const tryNumber = job.try ?? 1;
    const scheduled = gone
      ? null
      : nextRetryDelayMs({ schedule: scheduleOf(loaded.retrySchedule), attemptNumber: tryNumber });
    if (current.status === 'SUCCEEDED' || current.nextAttemptAt === null) {
      // A manual attempt succeeded meanwhile: nothing left to retry.
      status = current.status === 'SENDING' ? 'FAILED' : current.status;
    } else if (scheduled === null) {
      status = 'FAILED';
      if (!gone) await recordOperationalEvent(sql, deps.hooks, exhaustedEvent(loaded, attemptId, result));
    } else {
      const delay =
        result.statusCode === 429 || result.statusCode === 503
          ? retryAfterDelayMs(result.retryAfter, scheduled)
          : scheduled;
      nextAttemptAt = new Date(Date.now() + delay);
      status = 'PENDING';
      retry = {
        deliveryId: loaded.deliveryId,
        endpointId: loaded.endpointId,
        trigger: 'SCHEDULED',
        try: tryNumber + 1,
        startAfter: nextAttemptAt,
        tenant: loaded.appId,
        ordered: loaded.ordering === 'FIFO',
        traceparent: job.traceparent,
      };
    }
  } else {
    nextAttemptAt = gone ? null : current.nextAttemptAt;
    const others = await sql.query(
      `SELECT 1 FROM "Attempt" WHERE "deliveryId" = $1 AND status = 'SENDING' AND id <> $2 LIMIT 1`,
      [loaded.deliveryId, attemptId],
    );
    // A FIFO delivery held back before this manual try goes back to waiting for its turn.
    const held = loaded.status === 'PENDING' && !loaded.scheduled && loaded.heldById !== null;
    status = others.rowCount ? 'SENDING' : nextAttemptAt || held ? 'PENDING' : 'FAILED';
  }
  await sql.query({
    name: 'dispatch_delivery_settle',
    text: `UPDATE "Delivery" SET status = $2, "nextAttemptAt" = $3, "updatedAt" = now() WHERE id = $1`,
    values: [loaded.deliveryId, status, nextAttemptAt],
  });
  if (retry) await deps.queue.enqueue(sql, [retry]);
  return passTurn(deps, sql, loaded, status, retry?.startAfter ? { retryAt: retry.startAfter } : {});
}

/** FIFO: a delivery that is finished (succeeded or failed for good) passes the turn to the next. */
async function passTurn(
  deps: DeliverDeps,
  sql: SqlExecutor,
  loaded: Loaded,
  status: Loaded['status'],
  out: { retryAt?: Date },
): Promise<{ retryAt?: Date }> {
  if (loaded.ordering !== 'FIFO' || status === 'PENDING' || status === 'SENDING') return out;
  const woken = await advanceFifo(deps.queue, sql, loaded.endpointId);
  return woken && !out.retryAt ? { retryAt: woken } : out;
}

export interface SuccessSettler {
  /** Resolves once the try is recorded and its job completed. */
  succeeded(input: FinishInput): Promise<{ retryAt?: Date }>;
}

/** Most successful tries settled in one transaction. */
const SETTLE_BATCH = 100;

/**
 * Settles successful tries like a group commit: while one batch is being
 * settled, the tries that succeed meanwhile queue up and go together in the
 * next, in one transaction (delete their jobs with pg-boss's deleteJob, then
 * one statement records the attempts, marks the deliveries SUCCEEDED and
 * clears the endpoints' failure record), so a busy worker pays a few round
 * trips per batch and an idle one settles a lone try at
 * once. A job taken over by another worker (this one was presumed lost) keeps
 * its attempt's outcome, and its delivery is left to the new owner, as
 * finishAttempt does. Failures keep their own transaction: they carry the
 * retry rules. A batch that fails as a whole (a deadlock) is settled try by
 * try.
 */
export function createSuccessSettler(deps: DeliverDeps): SuccessSettler {
  async function settleBatch(batch: FinishInput[]): Promise<{ retryAt?: Date }[]> {
    await inTransaction(
      deps.pool,
      async (sql) => {
        const settled = new Set(
          await deps.queue.complete(
            sql,
            batch.map((b) => b.fence),
          ),
        );
        await sql.query({
          name: 'dispatch_tries_succeeded',
          text: `WITH attempt AS (
                 UPDATE "Attempt" a SET status = 'SUCCEEDED', "responseStatusCode" = r.code, "responseBody" = r.body, "durationMs" = r.ms,
                   error = NULL, "errorKind" = NULL, "finishedAt" = now()
                 FROM unnest($1::text[], $2::int[], $3::text[], $4::int[]) AS r(id, code, body, ms)
                 WHERE a.id = r.id
               ), healed AS (
                 UPDATE "Endpoint" SET "failingSince" = NULL WHERE id = ANY($6::text[]) AND "failingSince" IS NOT NULL
               )
               UPDATE "Delivery" SET status = 'SUCCEEDED', "nextAttemptAt" = NULL, "updatedAt" = now()
               WHERE id = ANY($5::text[])`,
          values: [
            batch.map((b) => b.attemptId),
            batch.map((b) => b.result.statusCode ?? null),
            batch.map((b) => b.result.responseBody ?? null),
            batch.map((b) => b.result.durationMs),
            batch.filter((b) => settled.has(b.fence.id)).map((b) => b.loaded.deliveryId),
            [...new Set(batch.filter((b) => b.loaded.failingSince).map((b) => b.loaded.endpointId))],
          ],
        });
      },
      CUSTOM_PLANS,
    );
    return batch.map(() => ({}));
  }

  return {
    succeeded: createGroupCommit<FinishInput, { retryAt?: Date }>({
      maxBatch: SETTLE_BATCH,
      writeBatch: settleBatch,
      writeAlone: (input) => inTransaction(deps.pool, (sql) => finishAttempt(deps, sql, input), CUSTOM_PLANS),
      onBatchFailed: (error, size) =>
        deps.logger.warn(
          `delivery: settling ${size} successful tries together failed; settling each alone`,
          error instanceof Error ? error.message : error,
        ),
    }),
  };
}

/**
 * failingSince starts at an endpoint's first failure and is cleared by any
 * success; a 410 disables the endpoint at once, and failing everything for
 * longer than disableAfterSeconds disables it too.
 */
async function recordEndpointHealth(
  deps: DeliverDeps,
  sql: SqlExecutor,
  loaded: Loaded,
  result: SendResult,
  gone: boolean,
): Promise<void> {
  if (result.ok) {
    if (loaded.failingSince) {
      await sql.query(`UPDATE "Endpoint" SET "failingSince" = NULL WHERE id = $1 AND "failingSince" IS NOT NULL`, [
        loaded.endpointId,
      ]);
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
    const disabled = await sql.query(
      `UPDATE "Endpoint" SET disabled = true, "disabledReason" = $2, "disabledAt" = now(), "failingSince" = COALESCE("failingSince", now()),
              "updatedAt" = now()
       WHERE id = $1 AND NOT disabled`,
      [loaded.endpointId, reason],
    );
    deps.logger.info(`delivery: disabled endpoint ${loaded.endpointId}: ${reason}`);
    if (disabled.rowCount) await recordOperationalEvent(sql, deps.hooks, disabledEvent(loaded, gone, reason));
  } else if (!loaded.failingSince) {
    await sql.query(`UPDATE "Endpoint" SET "failingSince" = now() WHERE id = $1 AND "failingSince" IS NULL`, [
      loaded.endpointId,
    ]);
  } else if (Date.now() - loaded.failingSince.getTime() >= deps.failingAfterSeconds * 1000) {
    await recordOperationalEvent(sql, deps.hooks, failingEvent(deps, loaded, loaded.failingSince, result));
  }
}

/** endpoint.disabled by Dispatch: 410 Gone, or failing longer than disableAfterSeconds. */
function disabledEvent(loaded: Loaded, gone: boolean, detail: string) {
  return {
    type: 'endpoint.disabled' as const,
    endpointId: loaded.endpointId,
    data: {
      reason: gone ? 'gone' : 'failing',
      detail,
      changedBy: 'dispatch',
      failingSince: (loaded.failingSince ?? new Date()).toISOString(),
    },
  };
}

/** endpoint.failing, once per run of failures (the run is known by when it started). */
function failingEvent(deps: DeliverDeps, loaded: Loaded, failingSince: Date, result: SendResult) {
  return {
    type: 'endpoint.failing' as const,
    endpointId: loaded.endpointId,
    onceKey: `endpoint.failing:${loaded.endpointId}:${failingSince.getTime()}`,
    data: {
      failingSince: failingSince.toISOString(),
      disableAt: new Date(failingSince.getTime() + deps.disableAfterSeconds * 1000).toISOString(),
      lastAttempt: lastAttemptOf(result),
    },
  };
}

/** message.attempt.exhausted: the last scheduled try of a delivery failed. */
function exhaustedEvent(loaded: Loaded, attemptId: string, result: SendResult) {
  return {
    type: 'message.attempt.exhausted' as const,
    endpointId: loaded.endpointId,
    data: {
      messageId: loaded.messageId,
      messageUid: loaded.messageUid,
      eventType: loaded.eventType,
      deliveryId: loaded.deliveryId,
      attemptCount: loaded.attemptCount + 1,
      lastAttempt: { id: attemptId, ...lastAttemptOf(result) },
    },
  };
}

function lastAttemptOf(result: SendResult) {
  return {
    responseStatusCode: result.statusCode ?? null,
    error: result.error ?? null,
    errorKind: result.errorKind ?? null,
  };
}

function formatSeconds(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} day${seconds === 86_400 ? '' : 's'}`;
  if (seconds % 3_600 === 0) return `${seconds / 3_600} h`;
  return `${seconds} s`;
}
