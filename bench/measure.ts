/**
 * What the focused benchmarks (bench/*-cost.ts, next-retry.ts,
 * endpoint-stats.ts, live-log.ts) share: printing, timing, and a PostgreSQL
 * with pg-boss of their own in a temporary folder.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';

export const DAY = 86_400_000;

export const log = (line: string) => process.stdout.write(`${line}\n`);

export async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await work();
  return [value, performance.now() - start];
}

/** The median of `runs` timings of `work`, in milliseconds. */
export async function median(runs: number, work: () => Promise<unknown>): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) times.push((await timed(work))[1]);
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export interface BenchQueue {
  url: string;
  boss: PgBoss;
  pool: pg.Pool;
}

/**
 * Runs `work` against a fresh embedded PostgreSQL (in a temporary folder the
 * postgres user can enter) with a started pg-boss (no supervision or
 * schedules) and a pool of 4; stops and removes everything afterwards.
 */
export async function withBenchQueue<T>(name: string, work: (queue: BenchQueue) => Promise<T>): Promise<T> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), `dispatch-${name}-`));
  await fs.chmod(tmp, 0o755);
  const embedded = await startEmbeddedPostgres({ dir: path.join(tmp, 'pg'), database: name.replaceAll('-', '_') });
  try {
    const boss = new PgBoss({
      connectionString: embedded.url,
      schema: 'pgboss',
      supervise: false,
      schedule: false,
      max: 4,
    });
    boss.on('error', () => undefined);
    await boss.start();
    const pool = new pg.Pool({ connectionString: embedded.url, max: 4 });
    try {
      return await work({ url: embedded.url, boss, pool });
    } finally {
      await pool.end();
      await boss.stop({ graceful: false, close: true });
    }
  } finally {
    await embedded.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}
