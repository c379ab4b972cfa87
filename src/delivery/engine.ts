import type { Job } from 'pg-boss';
import client from 'prom-client';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import type { DeliveryHooks } from '../domain/context.ts';
import type { LiveBus } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { registry } from '../metrics.ts';
import { untraced } from '../tracing.ts';
import { createAddressPolicy } from '../webhooks/outbound-safety.ts';
import {
  type ClaimedTry,
  claimTries,
  createSuccessSettler,
  type DeliverDeps,
  sendTry,
  WorkspaceShares,
} from './deliver.ts';
import { attemptsInFlight } from './metrics.ts';
import {
  DELIVERY_QUEUE,
  fenceOf,
  JOB_HEARTBEAT_SECONDS,
  RECOVER_QUEUE,
  REPLAY_QUEUE,
  type RecoverJob,
  type ReplayJob,
  startQueue,
  triesOf,
} from './queue.ts';
import { runRecoverJob } from './recover.ts';
import { runReplayJob } from './replay.ts';
import { createSender } from './sender.ts';
import { type QueueWorker, startWorker } from './worker.ts';

/**
 * The delivery engine of one process: the queue every role writes to (the
 * domain's DeliveryHooks), and, in worker roles, the workers that send.
 */
export interface DeliveryEngine {
  /** Plugged into the domain: queues jobs in the transaction that stores deliveries. */
  hooks: DeliveryHooks;
  /** Why this process is not ready, or null. */
  readiness(): Promise<string | null>;
  /** Stops fetching, lets attempts in flight finish and be recorded, then closes the queue. */
  stop(): Promise<void>;
}

export interface EngineOptions {
  config: Config;
  db: Database;
  logger: Logger;
  live?: LiveBus | undefined;
  /** Run workers in this process (roles `all` and `worker`). */
  work: boolean;
}

/** The fallback poll when no NOTIFY arrives: retries queued by other processes, missed notifications. */
const POLL_INTERVAL_MS = 2_000;
/** Apps remembered between commits for WorkspaceShares.newWork (past this, the set stops growing until the next commit). */
const MAX_FRESH_APPS = 10_000;

export async function startDeliveryEngine({ config, db, logger, live, work }: EngineOptions): Promise<DeliveryEngine> {
  const queue = await startQueue({
    url: db.url,
    pool: db.pool,
    logger,
    supervise: work,
    superviseIntervalSeconds: config.queueSuperviseSeconds,
  });

  // Apps with deliveries created since the last commit here: new work of
  // another workspace ends a fetch pause of the workspace shares at once.
  let freshApps = new Set<string>();
  const hooks: DeliveryHooks = {
    deliveriesCreated: (sql, deliveries, { manual }) => {
      if (work && freshApps.size < MAX_FRESH_APPS) for (const d of deliveries) freshApps.add(d.appId);
      return queue.enqueue(sql, triesOf(deliveries, manual));
    },
    // Other processes' workers wake by pg-boss's NOTIFY, sent by the insert at commit.
    deliveriesCommitted: () => {
      if (freshApps.size > 0) {
        deliverDeps?.shares?.newWork(freshApps, Date.now());
        freshApps = new Set();
      }
      deliveryWorker?.wake();
    },
    recoverRequested: (sql, { endpointId, since, until }) =>
      queue.enqueueRecover(sql, { endpointId, since: since.toISOString(), until: (until ?? new Date()).toISOString() }),
    replayRequested: (sql, replayId) => queue.enqueueReplay(sql, { replayId }),
    scheduledCanceled: (sql, deliveryIds) => queue.deleteScheduled(sql, deliveryIds),
    nextScheduledTries: (endpointIds) => queue.nextScheduledTries(endpointIds),
  };

  let deliveryWorker: QueueWorker | undefined;
  let deliverDeps: DeliverDeps | undefined;
  if (!work) {
    return { hooks, readiness: async () => null, stop: () => queue.stop() };
  }

  const sender = createSender({
    policy: createAddressPolicy(config.allowNetworks),
    connectionsPerOrigin: config.workerConcurrency,
    proxy: config.outboundProxy,
  });
  deliverDeps = {
    pool: db.pool,
    queue,
    sender,
    live,
    logger,
    disableAfterSeconds: config.disableAfterSeconds,
    failingAfterSeconds: config.failingAfterSeconds,
    hooks,
    endpointConcurrency: config.endpointConcurrency,
    rateLimitMarginMs: config.rateLimitMarginMs,
    onRetryQueued: (at) => deliveryWorker?.wakeAt(at),
    onShareFreed: () => deliveryWorker?.wake(),
  };
  deliverDeps.settler = createSuccessSettler(deliverDeps);
  deliverDeps.shares = new WorkspaceShares(
    config.workspaceConcurrency || Math.max(2 * config.endpointConcurrency, Math.floor(config.workerConcurrency / 2)),
  );
  deliveryWorker = startWorker<ClaimedTry>({
    name: 'delivery',
    source: {
      take: (max) => claimTries(deliverDeps, max),
      key: (claimed) => claimed.job.id,
      fail: (claimed, error) =>
        queue.release(fenceOf(claimed.job), error instanceof Error ? error.message : String(error)),
      touch: (claimed) => queue.touch(claimed.map((c) => fenceOf(c.job))),
    },
    logger,
    concurrency: config.workerConcurrency,
    heartbeatMs: (JOB_HEARTBEAT_SECONDS * 1000) / 3,
    pollIntervalMs: POLL_INTERVAL_MS,
    onRunningChange: (delta) => attemptsInFlight.inc(delta),
    handler: (claimed) => sendTry(deliverDeps, claimed),
  });
  const recoveries = startWorker<Job<RecoverJob>>({
    name: 'recover',
    source: {
      take: (max) => untraced(() => queue.boss.fetch<RecoverJob>(RECOVER_QUEUE, { batchSize: max })),
      key: (job) => job.id,
      fail: async (job, error) => {
        await queue.boss.fail(
          RECOVER_QUEUE,
          { id: job.id, retryCount: job.retryCount },
          { message: error instanceof Error ? error.message : String(error) },
        );
      },
    },
    logger,
    concurrency: 1,
    pollIntervalMs: POLL_INTERVAL_MS * 5,
    handler: (job) => runRecoverJob({ pool: db.pool, queue, queued: hooks.deliveriesCommitted!, hooks }, job),
  });
  const replays = startWorker<Job<ReplayJob>>({
    name: 'replay',
    source: {
      take: (max) => untraced(() => queue.boss.fetch<ReplayJob>(REPLAY_QUEUE, { batchSize: max })),
      key: (job) => job.id,
      fail: async (job, error) => {
        await queue.boss.fail(
          REPLAY_QUEUE,
          { id: job.id, retryCount: job.retryCount },
          { message: error instanceof Error ? error.message : String(error) },
        );
      },
    },
    logger,
    concurrency: 1,
    pollIntervalMs: POLL_INTERVAL_MS * 5,
    handler: (job) => runReplayJob({ pool: db.pool, queue, queued: hooks.deliveriesCommitted! }, job),
  });

  // pg-boss's NOTIFY (jobs queued, by any process, ready now) wakes the
  // worker of that queue at once. A job failed by pg-boss's supervisor (its
  // worker was lost) comes back by the poll.
  const bossDb = queue.boss.getDb();
  const listens: { close(): Promise<void> }[] = [];
  try {
    const listening = await bossDb.listen?.(
      queue.bossChannel,
      (payload: string) => {
        if (payload === DELIVERY_QUEUE) deliveryWorker?.wake();
        else if (payload === RECOVER_QUEUE) recoveries.wake();
        else if (payload === REPLAY_QUEUE) replays.wake();
      },
      () => {
        deliveryWorker?.wake();
        recoveries.wake();
        replays.wake();
      },
    );
    if (listening) listens.push(listening);
  } catch (error) {
    logger.warn(
      'delivery: LISTEN failed; workers fall back to polling',
      error instanceof Error ? error.message : error,
    );
  }

  const depth = new client.Gauge({
    name: 'dispatch_delivery_queue_jobs',
    help: 'Delivery jobs in the queue by state, as pg-boss counts them (ready, deferred: waiting for a retry time, active: held by a worker).',
    labelNames: ['state'] as const,
    registers: [],
    async collect() {
      const depth = await queue.depth().catch(() => null);
      if (!depth) return;
      this.set({ state: 'ready' }, depth.ready);
      this.set({ state: 'deferred' }, depth.deferred);
      this.set({ state: 'active' }, depth.active);
    },
  });
  // One engine per process; a test that starts several replaces the series.
  registry.removeSingleMetric('dispatch_delivery_queue_jobs');
  registry.registerMetric(depth);

  let stopping: Promise<void> | undefined;
  return {
    hooks,
    async readiness() {
      return stopping ? 'delivery workers are stopping' : null;
    },
    stop() {
      stopping ??= (async () => {
        await Promise.all(listens.map((l) => l.close().catch(() => undefined)));
        await Promise.all([deliveryWorker!.stop(), recoveries.stop(), replays.stop()]);
        await sender.close();
        registry.removeSingleMetric('dispatch_delivery_queue_jobs');
        await queue.stop();
      })();
      return stopping;
    },
  };
}
