import type { Job, JobAttempt, PgBoss } from 'pg-boss';
import type { Logger } from '../logger.ts';

/**
 * A job pump over one pg-boss queue. One loop fetches as many jobs as it has
 * free slots, in one statement, and runs each on its own: a job never waits
 * for another, so a hanging endpoint holds only its own slots. It fetches
 * when woken (a NOTIFY that work was queued, a slot freeing, a retry of its
 * own coming due) and otherwise polls, as a fallback, every pollIntervalMs.
 *
 * Handlers settle their job themselves (a delivery completes its job in the
 * transaction that records the attempt); a handler that throws fails the
 * job, and pg-boss runs it again after a short backoff.
 */

export interface WorkerOptions<T> {
  boss: PgBoss;
  queue: string;
  logger: Logger;
  /** Most jobs running at once in this process. */
  concurrency: number;
  /** Most jobs of one group (endpoint) active at once, counted across all processes. */
  groupConcurrency?: number;
  /** Touch running jobs this often, so pg-boss knows their worker is alive. */
  heartbeatMs?: number;
  pollIntervalMs: number;
  handler: (job: Job<T>) => Promise<void>;
  onRunningChange?: (delta: number) => void;
}

export interface QueueWorker {
  /** Fetch now. */
  wake(): void;
  /** Fetch when `at` comes (a retry this process queued). */
  wakeAt(at: Date): void;
  readonly running: number;
  /** Stops fetching, waits for the running jobs to finish, stops. */
  stop(): Promise<void>;
}

/** Timers beyond this are left to polling, so a long retry schedule does not pile up timers. */
const MAX_TIMER_MS = 5 * 60_000;
/** Fired a little after the due time, so the database clock has surely passed it. */
const TIMER_SLACK_MS = 20;

export function startWorker<T>(options: WorkerOptions<T>): QueueWorker {
  const { boss, queue, logger, concurrency } = options;
  const running = new Map<string, { fence: JobAttempt; done: Promise<void> }>();
  const timers = new Set<NodeJS.Timeout>();
  let stopping = false;
  let woken = false;
  let sleeper: (() => void) | undefined;

  const wake = () => {
    woken = true;
    sleeper?.();
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (woken || stopping) {
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        sleeper = undefined;
        resolve();
      }
      sleeper = done;
    });

  const run = (job: Job<T>) => {
    const fence: JobAttempt = { id: job.id, retryCount: job.retryCount };
    options.onRunningChange?.(1);
    const done = options
      .handler(job)
      .catch(async (error: unknown) => {
        logger.warn(`${queue}: job ${job.id} failed; pg-boss will run it again`, error instanceof Error ? error.stack : error);
        const message = error instanceof Error ? error.message : String(error);
        await boss.fail(queue, fence, { message }).catch((failError: unknown) => {
          // It expires and is retried anyway; nothing is lost.
          logger.warn(`${queue}: could not fail job ${job.id}`, failError instanceof Error ? failError.message : failError);
        });
      })
      .finally(() => {
        running.delete(job.id);
        options.onRunningChange?.(-1);
        wake();
      });
    running.set(job.id, { fence, done });
  };

  const loop = (async () => {
    while (!stopping) {
      woken = false;
      const free = concurrency - running.size;
      if (free > 0) {
        let jobs: Job<T>[];
        try {
          jobs = await boss.fetch<T>(queue, {
            batchSize: free,
            ...(options.groupConcurrency ? { groupConcurrency: options.groupConcurrency } : {}),
          });
        } catch (error) {
          logger.warn(`${queue}: fetching jobs failed; trying again`, error instanceof Error ? error.message : error);
          await sleep(options.pollIntervalMs);
          continue;
        }
        for (const job of jobs) run(job);
        // A full batch: there is likely more, fetch again once slots are free.
        if (jobs.length === free) continue;
      }
      await sleep(options.pollIntervalMs);
    }
  })();

  const heartbeat = options.heartbeatMs
    ? setInterval(() => {
        const fences = [...running.values()].map((r) => r.fence);
        if (fences.length === 0) return;
        boss.touch(queue, fences).catch((error: unknown) => {
          logger.warn(`${queue}: heartbeat failed`, error instanceof Error ? error.message : error);
        });
      }, options.heartbeatMs)
    : undefined;
  heartbeat?.unref();

  return {
    wake,
    wakeAt(at) {
      const delay = at.getTime() - Date.now() + TIMER_SLACK_MS;
      if (delay > MAX_TIMER_MS || stopping) return;
      const timer = setTimeout(() => {
        timers.delete(timer);
        wake();
      }, Math.max(0, delay));
      timer.unref();
      timers.add(timer);
    },
    get running() {
      return running.size;
    },
    async stop() {
      stopping = true;
      wake();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      await loop;
      // Drain: attempts in flight finish and are recorded (heartbeats go on meanwhile).
      await Promise.allSettled([...running.values()].map((r) => r.done));
      if (heartbeat) clearInterval(heartbeat);
    },
  };
}
