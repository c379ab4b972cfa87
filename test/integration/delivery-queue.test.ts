import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { type DeliveryQueue, type QueuedTry, startQueue } from '../../src/delivery/queue.ts';
import { inTransaction } from '../../src/domain/context.ts';
import { createLogger } from '../../src/logger.ts';
import { openTestDatabase } from '../support/database.ts';

/**
 * The delivery queue's own rules, on a real PostgreSQL: which jobs a claim
 * takes, the per-endpoint limit across claimers, leases, fences and backoff.
 * (The whole path through workers is covered by the delivery-* tests.)
 */
describe('the delivery queue', () => {
  let db: Database;
  let queue: DeliveryQueue;
  let seq = 0;

  beforeAll(async () => {
    db = await openTestDatabase();
    queue = await startQueue({
      url: db.url,
      pool: db.pool,
      logger: createLogger('silent'),
      supervise: false,
      superviseIntervalSeconds: 60,
    });
  });
  afterAll(async () => {
    await queue?.stop();
    await db?.close();
  });
  beforeEach(async () => {
    await db.pool.query('DELETE FROM "DeliveryJob"');
  });

  const enqueue = (endpointId: string, n: number, extra: Partial<QueuedTry> = {}) =>
    inTransaction(db.pool, (sql) =>
      queue.enqueue(
        sql,
        Array.from({ length: n }, () => ({
          deliveryId: `dlv_${seq++}`,
          endpointId,
          trigger: 'SCHEDULED' as const,
          try: 1,
          ...extra,
        })),
      ),
    );
  const claim = (max: number, limit: number) => inTransaction(db.pool, (sql) => queue.claim(sql, max, limit));
  const held = async () => {
    const { rows } = await db.pool.query<{ endpointId: string; n: number }>(
      `SELECT "endpointId", count(*)::int AS n FROM "DeliveryJob" WHERE "leaseUntil" IS NOT NULL GROUP BY 1 ORDER BY 1`,
    );
    return Object.fromEntries(rows.map((r) => [r.endpointId, r.n]));
  };

  it('a worker process vacuums the job table once it has claimed vacuumAfterJobs tries, and not before', async () => {
    const vacuums = async () => {
      await db.pool.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await db.pool.query<{ n: string }>(
        `SELECT vacuum_count AS n FROM pg_stat_user_tables WHERE relname = 'DeliveryJob'`,
      );
      return Number(rows[0]!.n);
    };
    const tidy = await startQueue({
      url: db.url,
      pool: db.pool,
      logger: createLogger('silent'),
      supervise: false,
      superviseIntervalSeconds: 60,
      vacuumAfterJobs: 5,
    });
    try {
      const before = await vacuums();
      await enqueue('ep_vacuum', 4);
      expect(await inTransaction(db.pool, (sql) => tidy.claim(sql, 4, 8))).toHaveLength(4);
      // Over two checks (one a second): four claims are not enough.
      await new Promise((resolve) => setTimeout(resolve, 2_200));
      expect(await vacuums()).toBe(before);
      await enqueue('ep_vacuum2', 1);
      expect(await inTransaction(db.pool, (sql) => tidy.claim(sql, 1, 8))).toHaveLength(1);
      const deadline = Date.now() + 5_000;
      while ((await vacuums()) === before && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await vacuums()).toBe(before + 1);
    } finally {
      await tidy.stop();
    }
  });

  it('takes ready jobs oldest first, leases them, and leaves jobs due later alone', async () => {
    await enqueue('ep_a', 3);
    await enqueue('ep_b', 2, { startAfter: new Date(Date.now() + 60_000) });
    const jobs = await claim(10, 8);
    expect(jobs.map((j) => j.endpointId)).toEqual(['ep_a', 'ep_a', 'ep_a']);
    expect(jobs.every((j) => j.runs === 1 && j.trigger === 'SCHEDULED' && j.try === 1)).toBe(true);
    expect(await held()).toEqual({ ep_a: 3 });
    expect(await claim(10, 8)).toEqual([]);
    expect(await queue.depth()).toEqual({ ready: 0, deferred: 2, active: 3 });
  });

  it('a try queued this very millisecond is ready (runAt is stored rounded to the millisecond)', async () => {
    // In one transaction now() is one instant: enqueue, then claim. Rounding
    // goes up about half the time, so 20 rounds would catch a claim that
    // compared with the unrounded time.
    for (let round = 0; round < 20; round++) {
      const jobs = await inTransaction(db.pool, async (sql) => {
        await queue.enqueue(sql, [
          { deliveryId: `dlv_now_${round}`, endpointId: `ep_now_${round}`, trigger: 'SCHEDULED', try: 1 },
        ]);
        return queue.claim(sql, 1, 8);
      });
      expect(jobs.map((j) => j.deliveryId)).toEqual([`dlv_now_${round}`]);
    }
  });

  it('caps the jobs in flight per endpoint, counting the leases other claims hold', async () => {
    await enqueue('ep_a', 20);
    await enqueue('ep_b', 5);
    expect((await claim(100, 3)).length).toBe(6);
    expect(await held()).toEqual({ ep_a: 3, ep_b: 3 });
    // Full: nothing more until a job ends.
    expect(await claim(100, 3)).toEqual([]);
    const [first] = await db.pool
      .query<{ id: string; runs: number }>(
        `SELECT id::text, runs FROM "DeliveryJob" WHERE "endpointId" = 'ep_a' AND "leaseUntil" IS NOT NULL LIMIT 1`,
      )
      .then((r) => r.rows);
    expect(await inTransaction(db.pool, (sql) => queue.complete(sql, [first!]))).toBe(1);
    const next = await claim(100, 3);
    expect(next.map((j) => j.endpointId)).toEqual(['ep_a']);
  });

  it('two processes claiming at once never exceed the endpoint limit together', async () => {
    await enqueue('ep_a', 30);
    const first = await db.pool.connect();
    const second = await db.pool.connect();
    try {
      await first.query('BEGIN');
      await second.query('BEGIN');
      const one = await queue.claim(first, 100, 4);
      // The second claim waits for the first transaction, then sees its leases.
      const two = queue.claim(second, 100, 4);
      await first.query('COMMIT');
      const twoJobs = await two;
      await second.query('COMMIT');
      expect(one.length + twoJobs.length).toBe(4);
      expect(twoJobs).toEqual([]);
    } finally {
      first.release();
      second.release();
    }
    expect(await held()).toEqual({ ep_a: 4 });
  });

  it("an endpoint at its limit with a long backlog does not hide other endpoints' jobs", async () => {
    await enqueue('ep_slow', 2);
    expect((await claim(2, 2)).length).toBe(2);
    await enqueue('ep_slow', 500);
    await enqueue('ep_fast', 1);
    const jobs = await claim(1, 2);
    expect(jobs.map((j) => j.endpointId)).toEqual(['ep_fast']);
  });

  it('a lease that runs out queues the job again; the old fence can no longer complete it', async () => {
    await enqueue('ep_a', 1);
    const [job] = await claim(1, 8);
    // The worker renews its lease while it runs...
    await queue.touch([{ id: job!.id, runs: job!.runs }]);
    expect(await queue.requeueLost()).toBe(0);
    // ...then dies: its lease runs out.
    await db.pool.query(`UPDATE "DeliveryJob" SET "leaseUntil" = now() - interval '1 second'`);
    expect(await queue.requeueLost()).toBe(1);
    const [again] = await claim(1, 8);
    expect(again).toMatchObject({ id: job!.id, runs: 2 });
    const { rows } = await db.pool.query(`SELECT "lastError" FROM "DeliveryJob"`);
    expect(rows[0].lastError).toMatch(/lease/);
    // A late heartbeat or completion from the first run changes nothing.
    await queue.touch([{ id: job!.id, runs: 1 }]);
    expect(await inTransaction(db.pool, (sql) => queue.complete(sql, [{ id: job!.id, runs: 1 }]))).toBe(0);
    expect(await inTransaction(db.pool, (sql) => queue.complete(sql, [{ id: again!.id, runs: 2 }]))).toBe(1);
    expect(await queue.depth()).toEqual({ ready: 0, deferred: 0, active: 0 });
  });

  it('a run that fails without recording its try is released with a growing backoff', async () => {
    await enqueue('ep_a', 1);
    const [job] = await claim(1, 8);
    await queue.release({ id: job!.id, runs: job!.runs }, 'database unavailable');
    const { rows } = await db.pool.query(
      `SELECT "leaseUntil", "lastError", EXTRACT(EPOCH FROM ("runAt" - now()))::float AS wait FROM "DeliveryJob"`,
    );
    expect(rows[0].leaseUntil).toBeNull();
    expect(rows[0].lastError).toBe('database unavailable');
    expect(rows[0].wait).toBeGreaterThan(0.5);
    expect(rows[0].wait).toBeLessThanOrEqual(1);
    // Not ready until the backoff passes.
    expect(await claim(1, 8)).toEqual([]);
    await db.pool.query(`UPDATE "DeliveryJob" SET "runAt" = now() - interval '1 second'`);
    const [again] = await claim(1, 8);
    await queue.release({ id: again!.id, runs: again!.runs }, 'still unavailable');
    const wait = (await db.pool.query(`SELECT EXTRACT(EPOCH FROM ("runAt" - now()))::float AS wait FROM "DeliveryJob"`))
      .rows[0].wait;
    expect(wait).toBeGreaterThan(1.5);
    expect(wait).toBeLessThanOrEqual(2);
  });
});
