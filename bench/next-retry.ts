/**
 * What Endpoint.health's nextRetryAt costs for a FAILING endpoint with
 * NEXT_RETRY_DELIVERIES (1,000,000) deliveries over the last 7 days, the
 * newest 100 waiting for a retry, in a queue that also holds
 * NEXT_RETRY_BACKLOG (200,000) other endpoints' waiting tries:
 * - before: the walk of the endpoint's deliveries within its app's retry
 *   horizon (the statement Endpoint.health ran until this bench was added);
 * - after: the queue's probe (one index entry of the waiting tries per endpoint);
 * and what that index costs the statements that queue tries.
 * `npx tsx bench/next-retry.ts`; starts an embedded PostgreSQL in a temporary
 * folder, or uses BENCH_DATABASE_URL.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import {
  nextScheduledTriesSql,
  QUEUE_SCHEMA,
  type QueuedTry,
  startQueue,
  WAITING_INDEX,
} from '../src/delivery/queue.ts';
import { nextRetries } from '../src/domain/endpoint-health.ts';
import { idFloorAt } from '../src/domain/ids.ts';
import { createLogger } from '../src/logger.ts';
import { insertHistory, log, median, timed } from './measure.ts';

const DELIVERIES = Number(process.env.NEXT_RETRY_DELIVERIES ?? 1_000_000);
const BACKLOG = Number(process.env.NEXT_RETRY_BACKLOG ?? 200_000);

/** The default schedule's horizon as Endpoint.health computed it before (~66 h). */
const OLD_HORIZON_MS = (5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000) * 1000 * 2.4 + 8 * 15_000 + 60_000;

async function main() {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-next-retry-'));
  await fs.chmod(tmp, 0o755);
  let embedded: EmbeddedDatabase | undefined;
  let url = process.env.BENCH_DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres({ dir: path.join(tmp, 'postgres'), database: 'dispatch_next_retry' });
    url = embedded.url;
  }
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const queue = await (async () => {
    await migrate(url);
    return startQueue({
      url,
      pool,
      logger: createLogger('warn', 'bench'),
      supervise: false,
      superviseIntervalSeconds: 60,
    });
  })();
  try {
    const { rows: version } = await pool.query<{ server_version: string }>('SHOW server_version');
    log(
      `PostgreSQL ${version[0]!.server_version}, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(2)}; ` +
        `${DELIVERIES} deliveries of the endpoint, ${BACKLOG} other waiting tries`,
    );
    await pool.query(`INSERT INTO "Workspace" (id, name) VALUES ('ws_b', 'bench')`);
    await pool.query(
      `INSERT INTO "App" (id, "workspaceId", name, "retrySchedule") VALUES ('app_b', 'ws_b', 'bench', '{}')`,
    );
    await pool.query(`INSERT INTO "Recipient" (id, "appId", uid) VALUES ('rcp_b', 'app_b', 'r')`);
    await pool.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt", "failingSince")
       VALUES ('ep_b', 'app_b', 'rcp_b', 'http://x', now(), now() - interval '30 minutes')`,
    );

    const [, insertMs] = await timed(async () => {
      await insertHistory(pool, DELIVERIES);
      // The newest 100 wait for a retry in an hour, each with its try queued.
      const { rows: waiting } = await pool.query<{ id: string }>(
        `UPDATE "Delivery" SET status = 'PENDING', "nextAttemptAt" = now() + interval '1 hour'
         WHERE right(id, 16)::bigint > $1 RETURNING id`,
        [DELIVERIES - 100],
      );
      const inAnHour = new Date(Date.now() + 3_600_000);
      await queue.enqueue(
        pool,
        waiting.map((d) => ({
          deliveryId: d.id,
          endpointId: 'ep_b',
          trigger: 'SCHEDULED',
          try: 2,
          startAfter: inAnHour,
        })),
      );
      for (let from = 0; from < BACKLOG; from += 10_000) {
        const tries: QueuedTry[] = Array.from({ length: Math.min(10_000, BACKLOG - from) }, (_, k) => ({
          deliveryId: `dlv_other${String(from + k).padStart(10, '0')}`,
          endpointId: `ep_other${(from + k) % 1000}`,
          trigger: 'SCHEDULED',
          try: 2,
          startAfter: new Date(Date.now() + 600_000 + ((from + k) % 3600) * 1000),
        }));
        await queue.enqueue(pool, tries);
      }
    });
    log(`set up in ${(insertMs / 1000).toFixed(1)} s`);
    const { rows: tables } = await pool.query<{ table_name: string }>(
      `SELECT table_name FROM ${QUEUE_SCHEMA}.queue WHERE name = 'dispatch-try'`,
    );
    const jobTable = `${QUEUE_SCHEMA}.${tables[0]!.table_name}`;
    await pool.query(`VACUUM ANALYZE "Delivery", ${jobTable}`);

    // Before: Endpoint.health's statement until now (the App's schedule, then the walk).
    const before = async () => {
      await pool.query(`SELECT "retrySchedule", "attemptTimeoutMs" FROM "App" WHERE id = $1`, ['app_b']);
      const { rows } = await pool.query<{ nextAttemptAt: Date }>(
        `SELECT "nextAttemptAt" FROM "Delivery"
         WHERE "endpointId" = $1 AND id >= $2 AND status = 'PENDING' AND "nextAttemptAt" IS NOT NULL
         ORDER BY id LIMIT 1`,
        ['ep_b', idFloorAt('Delivery', new Date(Date.now() - OLD_HORIZON_MS))],
      );
      return rows[0]?.nextAttemptAt;
    };
    const after = async () => (await nextRetries(queue, ['ep_b'])).get('ep_b');
    const [walked, probed] = [await before(), await after()];
    if (walked?.getTime() !== probed?.getTime())
      throw new Error(`the probes disagree: ${walked?.toISOString()} and ${probed?.toISOString()}`);
    const beforeMs = await median(21, before);
    const afterMs = await median(21, after);
    const twenty = Array.from({ length: 20 }, (_, i) => (i === 0 ? 'ep_b' : `ep_other${i}`));
    const listMs = await median(21, () => nextRetries(queue, twenty));
    log(
      `nextRetryAt of a FAILING endpoint (${probed?.toISOString()}): before ${beforeMs.toFixed(1)} ms, after ${afterMs.toFixed(2)} ms (median of 21); ` +
        `20 endpoints in one statement ${listMs.toFixed(2)} ms`,
    );

    // What the index costs queueing retries (first tries are not in it): 20,000 100 per statement, with it and without it.
    const enqueue = async (label: string) => {
      const client = await pool.connect();
      try {
        const start = performance.now();
        for (let i = 0; i < 20_000; i += 100) {
          await queue.enqueue(
            client,
            Array.from({ length: 100 }, (_, k) => ({
              deliveryId: `dlv_${label}${String(i + k).padStart(8, '0')}`,
              endpointId: `ep_cost${(i + k) % 50}`,
              trigger: 'SCHEDULED' as const,
              // Retries: a first try (try 1) is not in the index at all.
              try: 2,
              startAfter: new Date(Date.now() + 3_600_000),
            })),
          );
        }
        return ((performance.now() - start) * 1000) / 20_000;
      } finally {
        client.release();
      }
    };
    // Alternating, three rounds each, as the machine's load moves.
    const { rows: indexDef } = await pool.query<{ def: string }>(
      `SELECT pg_get_indexdef('${QUEUE_SCHEMA}.${WAITING_INDEX}'::regclass) AS def`,
    );
    const withIndex: number[] = [];
    const without: number[] = [];
    for (let round = 0; round < 3; round++) {
      withIndex.push(await enqueue(`w${round}`));
      await pool.query(`DROP INDEX ${QUEUE_SCHEMA}.${WAITING_INDEX}`);
      without.push(await enqueue(`n${round}`));
      await pool.query(indexDef[0]!.def);
    }
    log(
      `queueing retries (µs per try, 100 per statement, 20,000 each, alternating): with the index ${withIndex.map((v) => v.toFixed(1)).join(', ')}; ` +
        `without ${without.map((v) => v.toFixed(1)).join(', ')}`,
    );
    const { rows: plan } = await pool.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) ${nextScheduledTriesSql(tables[0]!.table_name)}`,
      [['ep_b']],
    );
    log(plan.map((r) => `  ${r['QUERY PLAN']}`).join('\n'));
  } finally {
    await queue.stop();
    await pool.end();
    await embedded?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
