import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { DELIVERY_QUEUE, type DeliveryQueue, type QueuedTry, startQueue } from '../../src/delivery/queue.ts';
import { CUSTOM_PLANS, inTransaction } from '../../src/domain/context.ts';
import { createLogger } from '../../src/logger.ts';
import { openTestDatabase } from '../support/database.ts';

/**
 * The delivery queue's rules on pg-boss, on a real PostgreSQL: which jobs a
 * fetch takes, the per-endpoint limit across fetchers, heartbeats, fences and
 * backoff. (The whole path through workers is covered by the delivery-* tests.)
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
    await db.pool.query(`DELETE FROM pgboss.job WHERE name = $1`, [DELIVERY_QUEUE]);
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
      `SELECT group_id AS "endpointId", count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'active' GROUP BY 1 ORDER BY 1`,
      [DELIVERY_QUEUE],
    );
    return Object.fromEntries(rows.map((r) => [r.endpointId, r.n]));
  };

  it("the delivery path's transactions plan their statements for their parameters on every call, the others as PostgreSQL chooses", async () => {
    const mode = (options?: typeof CUSTOM_PLANS) =>
      inTransaction(
        db.pool,
        async (sql) => (await sql.query<{ plan_cache_mode: string }>('SHOW plan_cache_mode')).rows[0]!.plan_cache_mode,
        options,
      );
    expect(await mode(CUSTOM_PLANS)).toBe('force_custom_plan');
    expect(await mode()).toBe('auto');
    // Only for that transaction: the connection goes back to the pool as it was.
    expect((await db.pool.query('SHOW plan_cache_mode')).rows[0].plan_cache_mode).toBe('auto');
  });

  it('takes ready jobs, marks them active, and leaves jobs due later alone', async () => {
    await enqueue('ep_a', 3);
    await enqueue('ep_b', 2, { startAfter: new Date(Date.now() + 60_000) });
    await enqueue('ep_c', 1, { trigger: 'MANUAL', try: undefined });
    const jobs = await claim(10, 8);
    expect(jobs.map((j) => j.endpointId).sort()).toEqual(['ep_a', 'ep_a', 'ep_a', 'ep_c']);
    expect(
      jobs
        .filter((j) => j.endpointId === 'ep_a')
        .every((j) => j.runs === 1 && j.trigger === 'SCHEDULED' && j.try === 1),
    ).toBe(true);
    expect(jobs.find((j) => j.endpointId === 'ep_c')).toMatchObject({ trigger: 'MANUAL', try: null, runs: 1 });
    expect(await held()).toEqual({ ep_a: 3, ep_c: 1 });
    expect(await claim(10, 8)).toEqual([]);
    // pg-boss's own counts, as /metrics reports them.
    await queue.boss.getQueueStats(DELIVERY_QUEUE, { force: true });
    const deadline = Date.now() + 10_000;
    let depth = await queue.depth();
    while (depth.active !== 4 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      await queue.boss.getQueueStats(DELIVERY_QUEUE, { force: true });
      depth = await queue.depth();
    }
    expect(depth).toEqual({ ready: 0, deferred: 2, active: 4 });
  });

  it('a try queued in the transaction that fetches is ready', async () => {
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
      .query<{ id: string; retryCount: number }>(
        `SELECT id::text, retry_count AS "retryCount" FROM pgboss.job WHERE name = $1 AND group_id = 'ep_a' AND state = 'active' LIMIT 1`,
        [DELIVERY_QUEUE],
      )
      .then((r) => r.rows);
    expect(await inTransaction(db.pool, (sql) => queue.complete(sql, [first!]))).toEqual([first!.id]);
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

  it('a job whose heartbeat stops is fetched again by the next run; the old fence can no longer settle it', async () => {
    await enqueue('ep_a', 1);
    const [job] = await claim(1, 8);
    // The worker beats while it runs...
    await queue.touch([{ id: job!.id, retryCount: job!.retryCount }]);
    await queue.boss.supervise(DELIVERY_QUEUE);
    expect(await claim(1, 8)).toEqual([]);
    // ...then dies: its heartbeat goes stale, and pg-boss's supervisor fails the job for another run.
    await db.pool.query(`UPDATE pgboss.job SET heartbeat_on = now() - interval '1 minute' WHERE name = $1`, [
      DELIVERY_QUEUE,
    ]);
    // A supervisor pass is due again (one ran just now).
    await db.pool.query(`UPDATE pgboss.queue SET monitor_claim_on = NULL, monitor_on = NULL WHERE name = $1`, [
      DELIVERY_QUEUE,
    ]);
    await queue.boss.supervise(DELIVERY_QUEUE);
    await db.pool.query(`UPDATE pgboss.job SET start_after = now() - interval '1 second' WHERE name = $1`, [
      DELIVERY_QUEUE,
    ]);
    const [again] = await claim(1, 8);
    expect(again).toMatchObject({ id: job!.id, runs: 2, retryCount: 1 });
    // A late heartbeat or settle from the first run changes nothing.
    await queue.touch([{ id: job!.id, retryCount: 0 }]);
    expect(await inTransaction(db.pool, (sql) => queue.complete(sql, [{ id: job!.id, retryCount: 0 }]))).toEqual([]);
    expect(await inTransaction(db.pool, (sql) => queue.complete(sql, [{ id: again!.id, retryCount: 1 }]))).toEqual([
      job!.id,
    ]);
  });

  it('a try moved in while it was running counts its earlier runs', async () => {
    await enqueue('ep_a', 1, { runs: 1 });
    const [job] = await claim(1, 8);
    expect(job).toMatchObject({ runs: 2, retryCount: 0 });
  });

  it('a run that fails without recording its try is released with a growing backoff', async () => {
    await enqueue('ep_a', 1);
    const [job] = await claim(1, 8);
    await queue.release({ id: job!.id, retryCount: job!.retryCount }, 'database unavailable');
    const wait = async () =>
      (
        await db.pool.query(
          `SELECT state, output, EXTRACT(EPOCH FROM (start_after - now()))::float AS wait FROM pgboss.job WHERE name = $1`,
          [DELIVERY_QUEUE],
        )
      ).rows[0];
    const first = await wait();
    expect(first.state).toBe('retry');
    expect(JSON.stringify(first.output)).toContain('database unavailable');
    expect(first.wait).toBeGreaterThan(0.3);
    expect(first.wait).toBeLessThanOrEqual(2.5);
    // Not ready until the backoff passes.
    expect(await claim(1, 8)).toEqual([]);
    await db.pool.query(`UPDATE pgboss.job SET start_after = now() - interval '1 second' WHERE name = $1`, [
      DELIVERY_QUEUE,
    ]);
    const [again] = await claim(1, 8);
    expect(again!.runs).toBe(2);
    await queue.release({ id: again!.id, retryCount: again!.retryCount }, 'still unavailable');
    expect((await wait()).wait).toBeGreaterThan(first.wait);
  });
});
