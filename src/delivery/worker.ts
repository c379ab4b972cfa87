import type { Logger } from '../logger.ts';

/**
 * A job pump. One loop takes as many jobs as it has free slots, in one call,
 * and runs each on its own: a job never waits for another, so a hanging
 * endpoint holds only its own slots. It takes jobs when woken (a NOTIFY that
 * work was queued, a slot freeing, a retry of its own coming due) and
 * otherwise polls, as a fallback, every pollIntervalMs.
 *
 * Handlers settle their job themselves (a delivery deletes its job in the
 * statement that records the attempt); a handler that throws hands its job
 * to `fail`, which queues it again.
 */

export interface JobSource<J> {
  /** Takes up to `max` jobs. */
  take(max: number): Promise<J[]>;
  key(job: J): string;
  /** The handler threw: queue the job again. */
  fail(job: J, error: unknown): Promise<void>;
  /** Renews the hold on running jobs (heartbeat). */
  touch?(jobs: J[]): Promise<void>;
}

export interface WorkerOptions<J> {
  name: string;
  source: JobSource<J>;
  logger: Logger;
  /** Most jobs running at once in this process. */
  concurrency: number;
  /**
   * Touch running jobs this often, so the queue knows their worker is alive;
   * only those running at least this long (taking a job starts its hold).
   * At most a third of the queue's heartbeat, so a job is touched in time.
   */
  heartbeatMs?: number;
  pollIntervalMs: number;
  handler: (job: J) => Promise<void>;
  onRunningChange?: (delta: number) => void;
}

export interface QueueWorker {
  /** Take jobs now. */
  wake(): void;
  /** Take jobs when `at` comes (a retry this process queued). */
  wakeAt(at: Date): void;
  readonly running: number;
  /** Stops taking jobs, waits for the running ones to finish, stops. */
  stop(): Promise<void>;
}

/** Timers beyond this are left to polling, so a long retry schedule does not pile up timers. */
const MAX_TIMER_MS = 5 * 60_000;
/** Fired a little after the due time, so the database clock has surely passed it. */
const TIMER_SLACK_MS = 20;

export function startWorker<J>(options: WorkerOptions<J>): QueueWorker {
  const { source, logger, concurrency, name } = options;
  const running = new Map<string, { job: J; done: Promise<void>; startedAt: number }>();
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

  const run = (job: J) => {
    const key = source.key(job);
    options.onRunningChange?.(1);
    const done = options
      .handler(job)
      .catch(async (error: unknown) => {
        logger.warn(`${name}: job ${key} failed; it runs again`, error instanceof Error ? error.stack : error);
        await source.fail(job, error).catch((failError: unknown) => {
          // Its hold runs out and it is run again anyway; nothing is lost.
          logger.warn(`${name}: could not fail job ${key}`, failError instanceof Error ? failError.message : failError);
        });
      })
      .finally(() => {
        running.delete(key);
        options.onRunningChange?.(-1);
        wake();
      });
    running.set(key, { job, done, startedAt: Date.now() });
  };

  const loop = (async () => {
    while (!stopping) {
      woken = false;
      const free = concurrency - running.size;
      if (free > 0) {
        let jobs: J[];
        try {
          jobs = await source.take(free);
        } catch (error) {
          logger.warn(`${name}: taking jobs failed; trying again`, error instanceof Error ? error.message : error);
          await sleep(options.pollIntervalMs);
          continue;
        }
        for (const job of jobs) run(job);
        // A full batch: there is likely more, take again once slots are free.
        if (jobs.length === free) continue;
      }
      await sleep(options.pollIntervalMs);
    }
  })();

  const heartbeat =
    options.heartbeatMs && source.touch
      ? setInterval(() => {
          // A job's hold starts when it is taken, so only jobs running for a
          // whole interval need renewing: a job is touched at most two
          // intervals after it was taken, and the many that finish sooner
          // are never touched.
          const since = Date.now() - options.heartbeatMs!;
          const jobs = [...running.values()].filter((r) => r.startedAt <= since).map((r) => r.job);
          if (jobs.length === 0) return;
          source.touch!(jobs).catch((error: unknown) => {
            logger.warn(`${name}: heartbeat failed`, error instanceof Error ? error.message : error);
          });
        }, options.heartbeatMs)
      : undefined;
  heartbeat?.unref();

  return {
    wake,
    wakeAt(at) {
      const delay = at.getTime() - Date.now() + TIMER_SLACK_MS;
      if (delay > MAX_TIMER_MS || stopping) return;
      const timer = setTimeout(
        () => {
          timers.delete(timer);
          wake();
        },
        Math.max(0, delay),
      );
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
