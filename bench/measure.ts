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
import { idFloorAt } from '../src/domain/ids.ts';

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

/**
 * Fills app_b's endpoint ep_b (recipient rcp_b, made by the caller) with
 * `count` messages and SUCCEEDED deliveries spread over the last 7 days, with
 * ids as Dispatch makes them (sorting by time: src/domain/ids.ts), 50,000 per
 * statement; with `attempts`, a SENDING attempt for each too.
 */
export async function insertHistory(pool: pg.Pool, count: number, { attempts = false } = {}): Promise<void> {
  const base = Date.now() - 7 * DAY;
  const CHUNK = 50_000;
  for (let from = 1; from <= count; from += CHUNK) {
    const n = Math.min(CHUNK, count - from + 1);
    const at = Array.from({ length: n }, (_, k) => base + ((from + k) * 7 * DAY) / count);
    // The time part of an id, then a serial.
    const ids = (type: 'Message' | 'Delivery' | 'Attempt') =>
      at.map((t, k) => idFloorAt(type, new Date(t)).slice(0, -16) + String(from + k).padStart(16, '0'));
    const [msg, dlv] = [ids('Message'), ids('Delivery')];
    const when = `to_timestamp(t.at / 1000) AT TIME ZONE 'UTC'`;
    await pool.query(
      `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash", "createdAt")
       SELECT t.id, 'app_b', 'rcp_b', t.id, 'e', '{}', '', ${when} FROM unnest($1::text[], $2::float8[]) AS t(id, at)`,
      [msg, at],
    );
    await pool.query(
      `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", status, "createdAt", "updatedAt")
       SELECT t.id, 'app_b', 'rcp_b', t.m, 'ep_b', 'SUCCEEDED', ${when}, ${when}
       FROM unnest($1::text[], $2::text[], $3::float8[]) AS t(id, m, at)`,
      [dlv, msg, at],
    );
    if (attempts) {
      await pool.query(
        `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, url, "createdAt")
         SELECT t.id, 'app_b', 'rcp_b', t.m, 'ep_b', t.d, 'SENDING', 'http://x', ${when}
         FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) AS t(id, m, d, at)`,
        [ids('Attempt'), msg, dlv, at],
      );
    }
  }
}
