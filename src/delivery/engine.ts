import type { Job } from 'pg-boss';
import client from 'prom-client';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import type { DeliveryHooks } from '../domain/context.ts';
import type { LiveBus } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { registry } from '../metrics.ts';
import { createAddressPolicy } from '../webhooks/outbound-safety.ts';
import { type ClaimedTry, claimTries, createSuccessSettler, type DeliverDeps, sendTry } from './deliver.ts';
import { attemptsInFlight } from './metrics.ts';
import {
  DELIVERY_CHANNEL,
  fenceOf,
  JOB_LEASE_SECONDS,
  RECOVER_QUEUE,
  type RecoverJob,
  startQueue,
  triesOf,
} from './queue.ts';
import { runRecoverJob } from './recover.ts';
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

export async function startDeliveryEngine({ config, db, logger, live, work }: EngineOptions): Promise<DeliveryEngine> {
  const queue = await startQueue({
    url: db.url,
    pool: db.pool,
    logger,
    supervise: work,
    superviseIntervalSeconds: config.queueSuperviseSeconds,
    vacuumAfterJobs: config.queueVacuumJobs,
  });

  const hooks: DeliveryHooks = {
    deliveriesCreated: (sql, deliveries, { manual }) => queue.enqueue(sql, triesOf(deliveries, manual)),
    deliveriesCommitted: () => {
      deliveryWorker?.wake();
      queue.announce();
    },
    recoverRequested: (sql, { endpointId, since, until }) =>
      queue.enqueueRecover(sql, { endpointId, since: since.toISOString(), until: (until ?? new Date()).toISOString() }),
  };

  let deliveryWorker: QueueWorker | undefined;
  if (!work) {
    return { hooks, readiness: async () => null, stop: () => queue.stop() };
  }

  const sender = createSender({
    policy: createAddressPolicy(config.allowNetworks),
    connectionsPerOrigin: config.workerConcurrency,
  });
  const deliverDeps: DeliverDeps = {
    pool: db.pool,
    queue,
    sender,
    live,
    logger,
    disableAfterSeconds: config.disableAfterSeconds,
    failingAfterSeconds: config.failingAfterSeconds,
    hooks,
    endpointConcurrency: config.endpointConcurrency,
    onRetryQueued: (at) => deliveryWorker?.wakeAt(at),
  };
  deliverDeps.settler = createSuccessSettler(deliverDeps);
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
    heartbeatMs: (JOB_LEASE_SECONDS * 1000) / 3,
    pollIntervalMs: POLL_INTERVAL_MS,
    onRunningChange: (delta) => attemptsInFlight.inc(delta),
    handler: (claimed) => sendTry(deliverDeps, claimed),
  });
  const recoveries = startWorker<Job<RecoverJob>>({
    name: 'recover',
    source: {
      take: (max) => queue.boss.fetch<RecoverJob>(RECOVER_QUEUE, { batchSize: max }),
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

  // Jobs of a worker that died (its lease ran out) are queued again; every
  // worker process looks, which is harmless: the update is idempotent.
  const supervisor = setInterval(() => {
    queue
      .requeueLost()
      .then((n) => {
        if (n === 0) return;
        logger.warn(`delivery: ${n} job(s) of a lost worker queued again`);
        deliveryWorker?.wake();
      })
      .catch((error: unknown) =>
        logger.warn('delivery: looking for lost jobs failed', error instanceof Error ? error.message : error),
      );
  }, config.queueSuperviseSeconds * 1000);
  supervisor.unref();

  // A NOTIFY on DELIVERY_CHANNEL (deliveries queued by another process) or
  // pg-boss's channel (a recover job) wakes the worker concerned at once.
  const bossDb = queue.boss.getDb();
  const listens: { close(): Promise<void> }[] = [];
  try {
    for (const [channel, onPayload] of [
      [DELIVERY_CHANNEL, (payload: string) => payload !== queue.instanceId && deliveryWorker?.wake()],
      [queue.bossChannel, (payload: string) => payload === RECOVER_QUEUE && recoveries.wake()],
    ] as const) {
      const listening = await bossDb.listen?.(channel, onPayload, () => {
        deliveryWorker?.wake();
        recoveries.wake();
      });
      if (listening) listens.push(listening);
    }
  } catch (error) {
    logger.warn(
      'delivery: LISTEN failed; workers fall back to polling',
      error instanceof Error ? error.message : error,
    );
  }

  const depth = new client.Gauge({
    name: 'dispatch_delivery_queue_jobs',
    help: 'Delivery jobs in the queue by state (ready, deferred: waiting for a retry time, active: held by a worker).',
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
        clearInterval(supervisor);
        await Promise.all(listens.map((l) => l.close().catch(() => undefined)));
        await Promise.all([deliveryWorker!.stop(), recoveries.stop()]);
        await sender.close();
        registry.removeSingleMetric('dispatch_delivery_queue_jobs');
        await queue.stop();
      })();
      return stopping;
    },
  };
}
