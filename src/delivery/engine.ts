import client from 'prom-client';
import type { Db } from 'pg-boss';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import type { DeliveryHooks } from '../domain/context.ts';
import { registry } from '../http/metrics.ts';
import type { LiveBus } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { createAttemptStarter, createSuccessSettler, runDeliveryJob, type DeliverDeps } from './deliver.ts';
import { attemptsInFlight } from './metrics.ts';
import { createAddressPolicy } from './outbound-safety.ts';
import { DELIVERY_QUEUE, JOB_HEARTBEAT_SECONDS, RECOVER_QUEUE, startQueue, triesOf, type DeliveryJob, type RecoverJob } from './queue.ts';
import { runRecoverJob } from './recover.ts';
import { createSender } from './sender.ts';
import { startWorker, type QueueWorker } from './worker.ts';

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

export async function startDeliveryEngine({ config, db, logger, live, work }: EngineOptions): Promise<DeliveryEngine> {
  const queue = await startQueue({
    url: db.url,
    logger,
    supervise: work,
    superviseIntervalSeconds: config.queueSuperviseSeconds,
  });

  const hooks: DeliveryHooks = {
    deliveriesCreated: (sql, deliveries, { manual }) => queue.enqueue(sql, triesOf(deliveries, manual)),
    recoverRequested: (sql, { endpointId, since, until }) =>
      queue.enqueueRecover(sql, { endpointId, since: since.toISOString(), until: (until ?? new Date()).toISOString() }),
  };

  if (!work) {
    return { hooks, readiness: async () => null, stop: () => queue.stop() };
  }

  const sender = createSender({ policy: createAddressPolicy(config.allowNetworks), connectionsPerOrigin: config.workerConcurrency });
  const deliverDeps: DeliverDeps = {
    pool: db.pool,
    queue,
    sender,
    live,
    logger,
    disableAfterSeconds: config.disableAfterSeconds,
    onRetryQueued: (at) => deliveryWorker.wakeAt(at),
  };
  deliverDeps.settler = createSuccessSettler(deliverDeps);
  deliverDeps.starter = createAttemptStarter(deliverDeps);
  const deliveryWorker: QueueWorker = startWorker<DeliveryJob>({
    boss: queue.boss,
    queue: DELIVERY_QUEUE,
    logger,
    concurrency: config.workerConcurrency,
    groupConcurrency: config.endpointConcurrency,
    heartbeatMs: (JOB_HEARTBEAT_SECONDS * 1000) / 2,
    pollIntervalMs: POLL_INTERVAL_MS,
    onRunningChange: (delta) => attemptsInFlight.inc(delta),
    handler: (job) => runDeliveryJob(deliverDeps, job),
  });
  const recoveries = startWorker<RecoverJob>({
    boss: queue.boss,
    queue: RECOVER_QUEUE,
    logger,
    concurrency: 1,
    pollIntervalMs: POLL_INTERVAL_MS * 5,
    handler: (job) => runRecoverJob({ pool: db.pool, queue }, job),
  });

  // pg-boss NOTIFYs, on commit of a transaction that queued a ready job, the
  // queue's name; that wakes the worker of that queue at once.
  const bossDb = queue.boss.getDb();
  let listening: Awaited<ReturnType<NonNullable<Db['listen']>>> | undefined;
  try {
    listening = await bossDb.listen?.(
      queue.channel,
      (payload) => {
        if (payload === DELIVERY_QUEUE) deliveryWorker.wake();
        else if (payload === RECOVER_QUEUE) recoveries.wake();
      },
      () => {
        deliveryWorker.wake();
        recoveries.wake();
      },
    );
  } catch (error) {
    logger.warn('delivery: LISTEN failed; workers fall back to polling', error instanceof Error ? error.message : error);
  }

  const depth = new client.Gauge({
    name: 'dispatch_delivery_queue_jobs',
    help: 'Delivery jobs in the queue by state (ready, deferred: waiting for a retry time, active), as pg-boss last counted them.',
    labelNames: ['state'] as const,
    registers: [],
    async collect() {
      const stats = await queue.boss.getQueue(DELIVERY_QUEUE).catch(() => null);
      if (!stats) return;
      this.set({ state: 'ready' }, stats.readyCount);
      this.set({ state: 'deferred' }, stats.deferredCount);
      this.set({ state: 'active' }, stats.activeCount);
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
        await listening?.close().catch(() => undefined);
        await Promise.all([deliveryWorker.stop(), recoveries.stop()]);
        await sender.close();
        registry.removeSingleMetric('dispatch_delivery_queue_jobs');
        await queue.stop();
      })();
      return stopping;
    },
  };
}
