import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/client.ts';
import { createSuccessSettler, type SuccessSettler } from '../../src/delivery/deliver.ts';
import { type DeliveryJob, type DeliveryQueue, startQueue, triesOf } from '../../src/delivery/queue.ts';
import type { Sender } from '../../src/delivery/sender.ts';
import { inTransaction } from '../../src/domain/context.ts';
import { newId } from '../../src/domain/ids.ts';
import { createLogger } from '../../src/logger.ts';
import { openTestDatabase } from '../support/database.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

describe('tries are started and settled in batches', () => {
  let t: TestDispatch;
  let receiver: Receiver;

  beforeAll(async () => {
    t = await startTestDispatch();
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await t?.stop();
    await receiver?.close();
  });

  it('a burst of 300 messages: every delivery SUCCEEDED with one SUCCEEDED attempt and its job gone, several tries per transaction', async () => {
    const appId = await createDeliveryApp(t.client);
    for (let k = 0; k < 4; k++)
      await createEndpoint(t.client, { appId, recipientId: `burst_${k}`, url: `${receiver.url}/${k}` });
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < 300) {
          const n = next++;
          await send(t.client, { appId, recipientId: `burst_${n % 4}`, data: { n } });
        }
      }),
    );
    const pool = t.dispatch.db.pool;
    await eventually(
      async () => {
        const { rows } = await pool.query(
          `SELECT count(*) FILTER (WHERE status = 'SUCCEEDED') AS done FROM "Delivery" WHERE "appId" = $1`,
          [appId],
        );
        return Number(rows[0].done) === 300 ? true : undefined;
      },
      { timeoutMs: 30_000 },
    );

    const { rows: attempts } = await pool.query(
      `SELECT d.id, count(a.id) AS attempts, bool_and(a.status = 'SUCCEEDED' AND a."responseStatusCode" = 200 AND a."finishedAt" IS NOT NULL) AS ok
       FROM "Delivery" d LEFT JOIN "Attempt" a ON a."deliveryId" = d.id WHERE d."appId" = $1 GROUP BY d.id`,
      [appId],
    );
    expect(attempts).toHaveLength(300);
    for (const row of attempts)
      expect({ attempts: Number(row.attempts), ok: row.ok }).toEqual({ attempts: 1, ok: true });
    expect(receiver.received.length).toBe(300);

    const { rows: jobs } = await pool.query(
      `SELECT j.id FROM pgboss.job j JOIN "Delivery" d ON d.id = j.data->>'d' WHERE j.name = 'dispatch-try' AND d."appId" = $1`,
      [appId],
    );
    expect(jobs).toHaveLength(0);
    // A statement's now() is one instant: fewer distinct finish times than
    // attempts means some statements settled several tries.
    const { rows: finishes } = await pool.query(
      `SELECT count(DISTINCT "finishedAt") AS n FROM "Attempt" WHERE "appId" = $1`,
      [appId],
    );
    const transactions = Number(finishes[0].n);
    // Likewise an Attempt's createdAt: several tries started per transaction.
    const { rows: starts } = await pool.query(
      `SELECT count(DISTINCT "createdAt") AS n FROM "Attempt" WHERE "appId" = $1`,
      [appId],
    );
    console.log(`300 tries started in ${starts[0].n} transactions and settled in ${transactions} statements`);
    expect(transactions).toBeLessThan(300);
    expect(Number(starts[0].n)).toBeLessThan(300);
  });
});

describe('a batch with a job taken over by another worker', () => {
  let db: Database;
  let queue: DeliveryQueue;
  let settler: SuccessSettler;

  beforeAll(async () => {
    db = await openTestDatabase();
    const logger = createLogger('silent');
    queue = await startQueue({ url: db.url, pool: db.pool, logger, supervise: false, superviseIntervalSeconds: 60 });
    const unused = {} as Sender;
    settler = createSuccessSettler({
      pool: db.pool,
      queue,
      sender: unused,
      logger,
      disableAfterSeconds: 3600,
      failingAfterSeconds: 3600,
      hooks: { deliveriesCreated: (sql, deliveries, { manual }) => queue.enqueue(sql, triesOf(deliveries, manual)) },
      endpointConcurrency: 8,
      rateLimitMarginMs: 200,
    });
  });
  afterAll(async () => {
    await queue?.stop();
    await db?.close();
  });

  it('the tries still owned succeed, every attempt keeps its outcome, the taken-over delivery is left to its new owner', async () => {
    const ws = newId('Workspace');
    const app = newId('App');
    const recipient = newId('Recipient');
    const endpoint = newId('Endpoint');
    await db.pool.query(`INSERT INTO "Workspace" (id, name) VALUES ($1, 'settle')`, [ws]);
    await db.pool.query(`INSERT INTO "App" (id, "workspaceId", name) VALUES ($1, $2, 'settle')`, [app, ws]);
    await db.pool.query(`INSERT INTO "Recipient" (id, "appId", uid) VALUES ($1, $2, 'r')`, [recipient, app]);
    await db.pool.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt") VALUES ($1, $2, $3, 'http://127.0.0.1:9/', now())`,
      [endpoint, app, recipient],
    );
    const tries: { delivery: string; attempt: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const message = newId('Message');
      const delivery = newId('Delivery');
      const attempt = newId('Attempt');
      await db.pool.query(
        `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash") VALUES ($1, $2, $3, $1, 'e', '{}', 'x')`,
        [message, app, recipient],
      );
      await db.pool.query(
        `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", status, "nextAttemptAt", "updatedAt")
         VALUES ($1, $2, $3, $4, $5, 'SENDING', now(), now())`,
        [delivery, app, recipient, message, endpoint],
      );
      await db.pool.query(
        `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", status, url)
         VALUES ($1, $2, $3, $4, $5, $6, 'SENDING', 'http://127.0.0.1:9/')`,
        [attempt, app, recipient, message, endpoint, delivery],
      );
      await inTransaction(db.pool, (sql) =>
        queue.enqueue(sql, [{ deliveryId: delivery, endpointId: endpoint, trigger: 'SCHEDULED', try: 1 }]),
      );
      tries.push({ delivery, attempt });
    }
    const jobs = await inTransaction(db.pool, (sql) => queue.claim(sql, 3, 8));
    expect(jobs).toHaveLength(3);
    const byDelivery = new Map(jobs.map((j) => [j.deliveryId, j] as [string, DeliveryJob]));
    const input = (i: number, runs?: number) => {
      const job = byDelivery.get(tries[i]!.delivery)!;
      return {
        job,
        // A stale fence: the job has since been handed to another worker.
        fence: { id: job.id, retryCount: runs ?? job.retryCount },
        loaded: {
          deliveryId: tries[i]!.delivery,
          endpointId: endpoint,
          failingSince: null,
          retrySchedule: [],
        } as never,
        attemptId: tries[i]!.attempt,
        trigger: 'SCHEDULED' as const,
        result: { ok: true, statusCode: 200, responseBody: 'ok', durationMs: 3 },
      };
    };
    // The first settles at once; the other two queue behind it and go together.
    await Promise.all([settler.succeeded(input(0)), settler.succeeded(input(1, 7)), settler.succeeded(input(2))]);

    const status = async (id: string) =>
      (await db.pool.query(`SELECT status FROM "Delivery" WHERE id = $1`, [id])).rows[0].status;
    expect(await status(tries[0]!.delivery)).toBe('SUCCEEDED');
    expect(await status(tries[1]!.delivery)).toBe('SENDING');
    expect(await status(tries[2]!.delivery)).toBe('SUCCEEDED');
    // Every attempt keeps its outcome; only the job still held by this worker is gone.
    const { rows: attempts } = await db.pool.query(`SELECT status FROM "Attempt" WHERE id = ANY($1::text[])`, [
      tries.map((t) => t.attempt),
    ]);
    expect(attempts.map((a) => a.status)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED']);
    const { rows } = await db.pool.query(`SELECT id::text, state FROM pgboss.job WHERE name = 'dispatch-try'`);
    expect(rows).toEqual([{ id: byDelivery.get(tries[1]!.delivery)!.id, state: 'active' }]);
  });
});
