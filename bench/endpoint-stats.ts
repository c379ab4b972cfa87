/**
 * What Endpoint.stats and Endpoint.health cost on an endpoint with
 * 1,000,000 attempts (and as many deliveries) over the last 7 days, and what
 * the trigger that keeps the stats costs the statements that record
 * attempts. `npx tsx bench/endpoint-stats.ts` (a few minutes); starts an
 * embedded PostgreSQL in a temporary folder, or uses BENCH_DATABASE_URL.
 * STATS_ATTEMPTS changes the count, STATS_TRIGGER_ROWS the attempts per trigger-cost case (20,000).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { endpointHealth, endpointLastError, endpointStats } from '../src/domain/endpoint-health.ts';
import { DAY, insertHistory, log, median, timed } from './measure.ts';

const ATTEMPTS = Number(process.env.STATS_ATTEMPTS ?? 1_000_000);

async function main() {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-stats-'));
  await fs.chmod(tmp, 0o755);
  let embedded: EmbeddedDatabase | undefined;
  let url = process.env.BENCH_DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres({ dir: path.join(tmp, 'postgres'), database: 'dispatch_stats' });
    url = embedded.url;
  }
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    await migrate(url);
    const { rows: version } = await pool.query<{ server_version: string }>('SHOW server_version');
    log(
      `PostgreSQL ${version[0]!.server_version}, ${os.cpus().length} cores (${os.cpus()[0]?.model}), load ${os.loadavg()[0]!.toFixed(2)}`,
    );
    await pool.query(`INSERT INTO "Workspace" (id, name) VALUES ('ws_b', 'bench')`);
    await pool.query(
      `INSERT INTO "App" (id, "workspaceId", name, "retrySchedule") VALUES ('app_b', 'ws_b', 'bench', '{}')`,
    );
    await pool.query(`INSERT INTO "Recipient" (id, "appId", uid) VALUES ('rcp_b', 'app_b', 'r')`);
    await pool.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt") VALUES ('ep_b', 'app_b', 'rcp_b', 'http://x', now()), ('ep_c', 'app_b', 'rcp_b', 'http://y', now())`,
    );

    log(`inserting ${ATTEMPTS} messages, deliveries and SENDING attempts over 7 days…`);
    const [, insertMs] = await timed(() => insertHistory(pool, ATTEMPTS, { attempts: true }));
    log(`  ${(insertMs / 1000).toFixed(1)} s`);

    // Finishing them, 1000 per statement, through the trigger: 1 in 10 fails; durations 5 ms to ~2 s.
    const finish = async (after: string) => {
      const { rows } = await pool.query<{ last: string | null }>(
        `WITH batch AS (SELECT id FROM "Attempt" WHERE "endpointId" = 'ep_b' AND id > $1 ORDER BY id LIMIT 1000),
         done AS (
           UPDATE "Attempt" a SET status = CASE WHEN right(a.id, 16)::bigint % 10 = 0 THEN 'FAILED'::"AttemptStatus" ELSE 'SUCCEEDED'::"AttemptStatus" END,
                  "durationMs" = 5 + (right(a.id, 16)::bigint * 7919) % 2000, "responseStatusCode" = 200, "finishedAt" = now()
           FROM batch WHERE a.id = batch.id RETURNING a.id)
         SELECT max(id) AS last FROM done`,
        [after],
      );
      return rows[0]!.last;
    };
    log('finishing them through the stats trigger, 1000 per statement…');
    const [, finishMs] = await timed(async () => {
      let after: string | null = '';
      while (after !== null) after = await finish(after);
    });
    log(`  ${(finishMs / 1000).toFixed(1)} s`);
    await pool.query('VACUUM ANALYZE "Attempt", "Delivery", "EndpointStat"');
    const { rows: statRows } = await pool.query<{ n: number; size: string }>(
      `SELECT count(*)::int AS n, pg_size_pretty(pg_total_relation_size('"EndpointStat"')) AS size FROM "EndpointStat"`,
    );
    const { rows: attemptSize } = await pool.query<{ size: string }>(
      `SELECT pg_size_pretty(pg_total_relation_size('"Attempt"')) AS size`,
    );
    log(`EndpointStat: ${statRows[0]!.n} rows, ${statRows[0]!.size} (Attempt: ${attemptSize[0]!.size})`);

    // What the trigger adds to recording attempts: the same updates with it disabled, on another endpoint's rows.
    const TRIGGER_ROWS = Number(process.env.STATS_TRIGGER_ROWS ?? 20_000);
    await pool.query(
      `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, url, "createdAt")
       SELECT 'atm_x' || lpad(i::text, 8, '0'), 'app_b', 'rcp_b', m.id, 'ep_c', d.id, 'SENDING', 'http://y', now()
       FROM (SELECT id FROM "Message" ORDER BY id LIMIT 1) m, (SELECT id FROM "Delivery" ORDER BY id LIMIT 1) d,
            generate_series(1, $1) i`,
      [TRIGGER_ROWS * 4],
    );
    await pool.query('VACUUM ANALYZE "Attempt"');
    const settle = async (offset: number, perStatement: number) => {
      const client = await pool.connect();
      try {
        const start = performance.now();
        for (let i = 0; i < TRIGGER_ROWS; i += perStatement) {
          const lo = `atm_x${String(offset + i + 1).padStart(8, '0')}`;
          const hi = `atm_x${String(offset + i + 1 + perStatement).padStart(8, '0')}`;
          await client.query(
            `UPDATE "Attempt" SET status = 'SUCCEEDED', "durationMs" = 40, "finishedAt" = now() WHERE id >= $1 AND id < $2`,
            [lo, hi],
          );
        }
        return ((performance.now() - start) * 1000) / TRIGGER_ROWS;
      } finally {
        client.release();
      }
    };
    const withBatch = await settle(0, 100);
    await pool.query('ALTER TABLE "Attempt" DISABLE TRIGGER "Attempt_endpoint_stat"');
    const withoutBatch = await settle(TRIGGER_ROWS, 100);
    const withoutOne = await settle(2 * TRIGGER_ROWS, 1);
    await pool.query('ALTER TABLE "Attempt" ENABLE TRIGGER "Attempt_endpoint_stat"');
    const withOne = await settle(3 * TRIGGER_ROWS, 1);
    log(
      `recording attempts (µs per attempt, ${TRIGGER_ROWS} each): 100 per statement ${withoutBatch.toFixed(1)} without the trigger, ${withBatch.toFixed(1)} with; ` +
        `1 per statement ${withoutOne.toFixed(1)} without, ${withOne.toFixed(1)} with`,
    );

    const now = Date.now();
    const cases = [
      { label: '24 h by 5 minutes (288 buckets)', since: new Date(now - DAY), bucket: 'FIVE_MINUTES' as const },
      { label: '7 days by hour (168 buckets)', since: new Date(now - 7 * DAY), bucket: 'HOUR' as const },
      { label: '30 days by day (30 buckets)', since: new Date(now - 30 * DAY), bucket: 'DAY' as const },
    ];
    for (const c of cases) {
      const stats = await endpointStats(pool, 'ep_b', { since: c.since, bucket: c.bucket });
      const ms = await median(21, () => endpointStats(pool, 'ep_b', { since: c.since, bucket: c.bucket }));
      const { rows: plan } = await pool.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT)
         SELECT (floor(extract(epoch FROM bin) * 1000 / $4) * $4)::float8 AS start, "latencyBucket", sum(succeeded)::int, sum(failed)::int
         FROM "EndpointStat" WHERE "endpointId" = $1 AND bin >= to_timestamp($2::float8 / 1000) AT TIME ZONE 'UTC'
           AND bin < to_timestamp($3::float8 / 1000) AT TIME ZONE 'UTC' GROUP BY 1, 2 ORDER BY 1, 2`,
        [
          'ep_b',
          stats.since.getTime(),
          stats.until.getTime(),
          1000 * { FIVE_MINUTES: 300, HOUR: 3600, DAY: 86400 }[c.bucket],
        ],
      );
      const buffers = plan
        .map((r) => r['QUERY PLAN'])
        .find((l) => l.includes('Buffers'))
        ?.trim();
      const scan = plan
        .map((r) => r['QUERY PLAN'])
        .find((l) => l.includes('Scan'))
        ?.trim();
      const naive = await median(3, () =>
        pool.query(
          `SELECT date_bin($2::interval, "createdAt", TIMESTAMP '2000-01-01'), count(*) FILTER (WHERE status = 'SUCCEEDED'), count(*),
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY "durationMs"), percentile_cont(0.95) WITHIN GROUP (ORDER BY "durationMs")
           FROM "Attempt" WHERE "endpointId" = 'ep_b' AND "createdAt" >= $1 GROUP BY 1`,
          [c.since, { FIVE_MINUTES: '5 minutes', HOUR: '1 hour', DAY: '1 day' }[c.bucket]],
        ),
      );
      log(
        `stats ${c.label}: ${ms.toFixed(1)} ms median of 21 (total ${stats.summary.total} attempts, p50 ${stats.summary.p50Ms} ms, p95 ${stats.summary.p95Ms} ms); ` +
          `${scan}; ${buffers}. The same from "Attempt" (percentile_cont): ${naive.toFixed(0)} ms`,
      );
    }

    // Health of a failing endpoint: the newest 1000 attempts failed, and the newest 100 deliveries wait for a retry.
    await pool.query(
      `UPDATE "Attempt" SET status = 'FAILED' WHERE "endpointId" = 'ep_b' AND right(id, 16)::bigint > $1`,
      [ATTEMPTS - 1000],
    );
    await pool.query(
      `UPDATE "Delivery" SET status = 'PENDING', "nextAttemptAt" = now() + interval '1 hour' WHERE right(id, 16)::bigint > $1`,
      [ATTEMPTS - 100],
    );
    await pool.query(`UPDATE "Endpoint" SET "failingSince" = now() - interval '30 minutes' WHERE id = 'ep_b'`);
    const endpoint = {
      id: 'ep_b',
      appId: 'app_b',
      disabled: false,
      disabledAt: null,
      disabledReason: null,
      failingSince: new Date(Date.now() - 30 * 60_000),
    };
    const health = endpointHealth(endpoint);
    const lastError = await endpointLastError(pool, health);
    const healthMs = await median(21, () => endpointLastError(pool, endpointHealth(endpoint)));
    log(
      `health of a FAILING endpoint (status and last error): ${healthMs.toFixed(1)} ms median of 21 (last error ${lastError?.attemptId}); ` +
        'its nextRetryAt is read from the queue: bench/next-retry.ts',
    );
    const healthy = await median(21, () =>
      endpointLastError(pool, endpointHealth({ ...endpoint, failingSince: null })),
    );
    log(`health of a HEALTHY endpoint: ${healthy.toFixed(2)} ms (no query)`);
  } finally {
    await pool.end();
    await embedded?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
