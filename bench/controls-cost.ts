/**
 * What the endpoint controls cost a try of an endpoint WITHOUT them, on the
 * queue side of the claim (no HTTP, no Dispatch): the one change there is
 * pg-boss's fetch with the FIFO tier in its group concurrency
 * ({ default: 8, tiers: { fifo: 1 } }) instead of the plain number 8. Two
 * partitioned queues set up like dispatch-try, the same backlog in 50
 * endpoints (no job in the tier), analyzed; fetch + deleteJob in one
 * transaction under the advisory lock, as the worker runs them, alternating
 * batch by batch so both see the same machine. (The claim's other change for
 * these tries is three more columns of rows it already reads, and a check in
 * JavaScript: no statement more.)
 *
 *   npx tsx bench/controls-cost.ts            (JOBS=20000 BATCH=100 GROUPS=50)
 */

import { performance } from 'node:perf_hooks';
import { withBenchQueue } from './measure.ts';

const JOBS = Number(process.env.JOBS ?? 20_000);
const BATCH = Number(process.env.BATCH ?? 100);
const GROUPS = Number(process.env.GROUPS ?? 50);
const ENDPOINT_LIMIT = 8;

await withBenchQueue('controls-cost', async ({ boss, pool }) => {
  const settings = { heartbeatSeconds: 10, expireInSeconds: 900, retryLimit: 10_000, partition: true };
  const variants = {
    before: ENDPOINT_LIMIT,
    after: { default: ENDPOINT_LIMIT, tiers: { fifo: 1 } },
  } as const;
  const names = Object.keys(variants) as (keyof typeof variants)[];
  for (const name of names) {
    await boss.createQueue(name, settings);
    for (let i = 0; i < JOBS; i += 1000) {
      const jobs = Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({
        data: { d: `dlv_${i + k}`, t: 'S', n: 1 },
        group: { id: `ep_${(i + k) % GROUPS}` },
      }));
      await boss.insert(name, jobs, { returnId: false });
    }
    const table = ((await boss.getQueue(name)) as unknown as { table: string }).table;
    await pool.query(`ANALYZE pgboss.${table}`);
  }

  const fetchBatch = async (name: keyof typeof variants) => {
    const client = await pool.connect();
    const db = { executeSql: (text: string, values?: unknown[]) => client.query(text, values) };
    try {
      const t0 = performance.now();
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(1)');
      const jobs = await boss.fetch(name, { batchSize: BATCH, groupConcurrency: variants[name], db });
      if (jobs.length)
        await boss.deleteJob(
          name,
          jobs.map((j) => ({ id: j.id, retryCount: j.retryCount })),
          { db },
        );
      await client.query('COMMIT');
      return { n: jobs.length, ms: performance.now() - t0 };
    } finally {
      client.release();
    }
  };
  const samples = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<keyof typeof variants, number[]>;
  const fetched = Object.fromEntries(names.map((n) => [n, 0])) as Record<keyof typeof variants, number>;
  const rounds = Math.floor(JOBS / BATCH) - 5;
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 ? names : [...names].reverse()) {
      const b = await fetchBatch(name);
      samples[name].push(b.ms);
      fetched[name] += b.n;
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const name of names) {
    console.log(
      `${name}: ${samples[name].length} claims of ${BATCH} (${fetched[name]} jobs): median ${median(samples[name]).toFixed(2)} ms, mean ${mean(samples[name]).toFixed(2)} ms a claim`,
    );
  }
  console.log(`after / before, median: ${(median(samples.after) / median(samples.before)).toFixed(3)}`);
});
