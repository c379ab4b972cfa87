/**
 * What the live feed's event log (LiveEvent, written by triggers on "Attempt"
 * and "Message") costs the statements that record attempts: the engine's
 * shapes, a batch of attempts started (one INSERT) and a batch settled (one
 * UPDATE), and the one-by-one shapes (a failure, startAttempt), each with the
 * log's triggers and with them disabled, in alternating rounds (median).
 * `npx tsx bench/live-log.ts`; starts an embedded PostgreSQL in a temporary
 * folder, or uses BENCH_DATABASE_URL. LOG_ROWS: attempts per case (10,000),
 * LOG_ROUNDS (5).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { log } from './measure.ts';

const ROWS = Number(process.env.LOG_ROWS ?? 10_000);
const ROUNDS = Number(process.env.LOG_ROUNDS ?? 5);
const TRIGGERS = ['Attempt_live_inserted', 'Attempt_live_updated'];

async function main() {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-live-log-'));
  await fs.chmod(tmp, 0o755);
  let embedded: EmbeddedDatabase | undefined;
  let url = process.env.BENCH_DATABASE_URL;
  if (!url) {
    embedded = await startEmbeddedPostgres({ dir: path.join(tmp, 'data'), database: 'bench' });
    url = embedded.url;
  }
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    await migrate(url);
    await pool.query(`INSERT INTO "Workspace" (id, name) VALUES ('ws_b', 'bench') ON CONFLICT DO NOTHING`);
    await pool.query(
      `INSERT INTO "App" (id, "workspaceId", name) VALUES ('app_b', 'ws_b', 'bench') ON CONFLICT DO NOTHING`,
    );
    await pool.query(
      `INSERT INTO "Recipient" (id, "appId", uid) VALUES ('rcp_b', 'app_b', 'r') ON CONFLICT DO NOTHING`,
    );
    await pool.query(
      `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash") VALUES ('msg_b', 'app_b', 'rcp_b', 'm', 'e', '{}', 'h') ON CONFLICT DO NOTHING`,
    );
    await pool.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt") VALUES ('ep_b', 'app_b', 'rcp_b', 'http://x', now()) ON CONFLICT DO NOTHING`,
    );
    await pool.query(
      `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "updatedAt") VALUES ('dlv_b', 'app_b', 'rcp_b', 'msg_b', 'ep_b', now()) ON CONFLICT DO NOTHING`,
    );
    let next = 0;
    /** µs per attempt: ROWS attempts started then settled, `per` per statement. */
    const run = async (per: number) => {
      const client = await pool.connect();
      try {
        const ids = Array.from({ length: ROWS }, () => `atm_${String(next++).padStart(12, '0')}`);
        let insert = 0;
        let update = 0;
        for (let i = 0; i < ROWS; i += per) {
          const chunk = ids.slice(i, i + per);
          let start = performance.now();
          await client.query(
            `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, trigger, url)
             SELECT id, 'app_b', 'rcp_b', 'msg_b', 'ep_b', 'dlv_b', 'SENDING', 'SCHEDULED', 'http://x' FROM unnest($1::text[]) AS t(id)`,
            [chunk],
          );
          insert += performance.now() - start;
          start = performance.now();
          await client.query(
            `UPDATE "Attempt" SET status = 'SUCCEEDED', "responseStatusCode" = 200, "durationMs" = 3, "finishedAt" = now() WHERE id = ANY($1::text[])`,
            [chunk],
          );
          update += performance.now() - start;
        }
        return { insert: (insert * 1000) / ROWS, update: (update * 1000) / ROWS };
      } finally {
        client.release();
      }
    };
    const toggle = async (on: boolean) => {
      for (const trigger of TRIGGERS)
        await pool.query(`ALTER TABLE "Attempt" ${on ? 'ENABLE' : 'DISABLE'} TRIGGER "${trigger}"`);
    };
    await run(100); // warm-up
    for (const per of [100, 1]) {
      const withLog: { insert: number; update: number }[] = [];
      const without: { insert: number; update: number }[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        await toggle(round % 2 === 0);
        (round % 2 === 0 ? withLog : without).push(await run(per));
        await toggle(round % 2 !== 0);
        (round % 2 === 0 ? without : withLog).push(await run(per));
      }
      const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const m = (xs: { insert: number; update: number }[]) => ({
        insert: median(xs.map((x) => x.insert)),
        update: median(xs.map((x) => x.update)),
      });
      const a = m(without);
      const b = m(withLog);
      log(
        `${per} per statement (µs per attempt, median of ${ROUNDS}): start ${a.insert.toFixed(1)} without the log, ${b.insert.toFixed(1)} with; ` +
          `settle ${a.update.toFixed(1)} without, ${b.update.toFixed(1)} with; both ${(a.insert + a.update).toFixed(1)} -> ${(b.insert + b.update).toFixed(1)} (+${(((b.insert + b.update) / (a.insert + a.update) - 1) * 100).toFixed(0)} %)`,
      );
    }
    const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM "LiveEvent"');
    log(`LiveEvent rows written: ${rows[0]!.n}`);
  } finally {
    await pool.end();
    await embedded?.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

await main();
