/**
 * A short, targeted measurement of pg-boss's delivery statements (no HTTP,
 * no Dispatch): two partitioned queues set up like dispatch-try, filled with
 * the same backlog in 50 groups; only one is analyzed after the inserts.
 * Their fetches (advisory lock, fetch with group concurrency, deleteJob, in
 * one transaction, as the worker runs them) alternate batch by batch, so
 * both see the same machine. Then touch of 256 active jobs against touch of
 * none (what a heartbeat costs when only long tries are touched).
 *
 *   npx tsx bench/fetch-cost.ts            (JOBS=20000 BATCH=100 GROUPS=50)
 */

import { performance } from 'node:perf_hooks';
import { withBenchQueue } from './measure.ts';

const JOBS = Number(process.env.JOBS ?? 20_000);
const BATCH = Number(process.env.BATCH ?? 100);
const GROUPS = Number(process.env.GROUPS ?? 50);

await withBenchQueue('fetch-cost', async ({ boss, pool }) => {
  const settings = { heartbeatSeconds: 10, expireInSeconds: 900, retryLimit: 10_000, partition: true };
  const names = ['stale', 'analyzed'];
  for (const name of names) await boss.createQueue(name, settings);
  const tables: Record<string, string> = {};
  for (const name of names) tables[name] = ((await boss.getQueue(name)) as unknown as { table: string }).table;
  for (const name of names) {
    for (let i = 0; i < JOBS; i += 1000) {
      const jobs = Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({
        data: { d: `del_${i + k}`, t: 'S', n: 1 },
        group: { id: `ep_${(i + k) % GROUPS}` },
      }));
      await boss.insert(name, jobs, { returnId: false });
    }
  }
  await pool.query(`ANALYZE pgboss.${tables.analyzed}`);

  const fetchBatch = async (name: string) => {
    const client = await pool.connect();
    const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
    try {
      const t0 = performance.now();
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(1)');
      const jobs = await boss.fetch(name, { batchSize: BATCH, groupConcurrency: 1_000, db });
      const t1 = performance.now();
      if (jobs.length)
        await boss.deleteJob(
          name,
          jobs.map((j) => ({ id: j.id, retryCount: j.retryCount })),
          { db },
        );
      await client.query('COMMIT');
      return { n: jobs.length, fetchMs: t1 - t0, totalMs: performance.now() - t0 };
    } finally {
      client.release();
    }
  };
  const totals = Object.fromEntries(names.map((n) => [n, { n: 0, fetchMs: 0, totalMs: 0, calls: 0 }]));
  const rounds = Math.floor(JOBS / BATCH / 2);
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 ? names : [...names].reverse()) {
      const b = await fetchBatch(name);
      const t = totals[name]!;
      t.n += b.n;
      t.fetchMs += b.fetchMs;
      t.totalMs += b.totalMs;
      t.calls++;
    }
  }
  for (const name of names) {
    const t = totals[name]!;
    console.log(
      `${name}: ${t.calls} fetches of ${BATCH} from a backlog of ${JOBS}: fetch ${(t.fetchMs / t.calls).toFixed(1)} ms a call, fetch+delete ${((t.totalMs / t.n) * 1000).toFixed(0)} us a job`,
    );
  }

  // Heartbeats: touch 256 active jobs vs touch none (a batch of short tries).
  const held = await boss.fetch('analyzed', { batchSize: 256 });
  const fences = held.map((j) => ({ id: j.id, retryCount: j.retryCount }));
  const time = async (f: () => Promise<unknown>, n: number) => {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await f();
    return (performance.now() - t0) / n;
  };
  const touchAll = await time(() => boss.touch('analyzed', fences), 20);
  const touchFew = await time(() => boss.touch('analyzed', fences.slice(0, 2)), 20);
  console.log(
    `touch: ${fences.length} jobs ${touchAll.toFixed(1)} ms a call, 2 jobs ${touchFew.toFixed(1)} ms a call (none: no call)`,
  );
});
