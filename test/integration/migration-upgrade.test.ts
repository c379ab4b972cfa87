import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, readMigrations } from '../../src/db/migrate.ts';
import { DELIVERY_QUEUE, startQueue } from '../../src/delivery/queue.ts';
import { newId } from '../../src/domain/ids.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase } from '../support/database.ts';

/**
 * An installation from before the delivery queue moved out of pg-boss: its
 * tries still queued in pg-boss (waiting, retrying or running) must be
 * queued in "DeliveryJob" by the upgrade, and nothing else.
 */
describe('upgrading a database whose deliveries were queued in pg-boss', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let client: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase({ empty: true });
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  });
  afterAll(async () => {
    await client?.end();
    await database?.drop();
  });

  it('moves the waiting, retrying and running tries into DeliveryJob; completed ones stay behind', async () => {
    const before = readMigrations().findIndex((m) => m.name.endsWith('_delivery_job'));
    expect(before).toBeGreaterThan(0);
    await migrate(database.url, { upTo: before });

    const ws = newId('Workspace');
    const app = newId('App');
    const recipient = newId('Recipient');
    const endpoint = newId('Endpoint');
    await client.query(`INSERT INTO "Workspace" (id, name) VALUES ($1, 'upgrade')`, [ws]);
    await client.query(`INSERT INTO "App" (id, "workspaceId", name) VALUES ($1, $2, 'upgrade')`, [app, ws]);
    await client.query(`INSERT INTO "Recipient" (id, "appId", uid) VALUES ($1, $2, 'r')`, [recipient, app]);
    await client.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, "updatedAt") VALUES ($1, $2, $3, 'https://example.com/', now())`,
      [endpoint, app, recipient],
    );
    const deliveries: string[] = [];
    for (let i = 0; i < 4; i++) {
      const message = newId('Message');
      const delivery = newId('Delivery');
      await client.query(
        `INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash") VALUES ($1, $2, $3, $1, 'e', '{}', 'x')`,
        [message, app, recipient],
      );
      await client.query(
        `INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "nextAttemptAt", "updatedAt") VALUES ($1, $2, $3, $4, $5, now(), now())`,
        [delivery, app, recipient, message, endpoint],
      );
      deliveries.push(delivery);
    }

    // The queue as the earlier engine made it.
    const boss = new PgBoss({ connectionString: database.url, schema: 'pgboss', supervise: false, schedule: false });
    await boss.start();
    try {
      await boss.createQueue('dispatch-delivery');
      const later = new Date(Date.now() + 3_600_000);
      await boss.insert('dispatch-delivery', [
        { data: { deliveryId: deliveries[0], trigger: 'SCHEDULED', try: 1 } },
        { data: { deliveryId: deliveries[1], trigger: 'SCHEDULED', try: 3 }, startAfter: later },
        { data: { deliveryId: deliveries[2], trigger: 'MANUAL' } },
        { data: { deliveryId: deliveries[3], trigger: 'SCHEDULED', try: 1 } },
      ]);
      // One running (its worker died), one done.
      const [running] = await boss.fetch<{ deliveryId: string }>('dispatch-delivery', { batchSize: 1 });
      const [done] = await boss.fetch<{ deliveryId: string }>('dispatch-delivery', { batchSize: 1 });
      await boss.complete('dispatch-delivery', done!.id);
      const finished = done!.data.deliveryId;
      const active = running!.data.deliveryId;

      await migrate(database.url, { upTo: readMigrations().findIndex((m) => m.name.endsWith('_queue_on_pgboss')) });

      const { rows } = await client.query<{
        deliveryId: string;
        endpointId: string;
        trigger: string;
        try: number | null;
        runs: number;
        due: boolean;
      }>(
        `SELECT "deliveryId", "endpointId", trigger, try, runs, "runAt" <= LOCALTIMESTAMP(3) AS due FROM "DeliveryJob" ORDER BY "deliveryId"`,
      );
      const expected = deliveries
        .filter((d) => d !== finished)
        .map((d) => ({
          deliveryId: d,
          endpointId: endpoint,
          trigger: d === deliveries[2] ? 'MANUAL' : 'SCHEDULED',
          try: d === deliveries[1] ? 3 : d === deliveries[2] ? null : 1,
          // A job that was running is run again, and its run closes the attempt it may have left.
          runs: d === active ? 1 : 0,
          due: d !== deliveries[1],
        }));
      expect(rows).toEqual(expected);
      const left = await client.query(`SELECT state FROM pgboss.job WHERE name = 'dispatch-delivery' ORDER BY state`);
      expect(left.rows).toEqual([{ state: 'completed' }]);
    } finally {
      await boss.stop({ graceful: false, close: true });
    }
  });

  it('then moves the tries queued in DeliveryJob into pg-boss and drops the table; a running one closes its attempt when it runs again', async () => {
    // Continues from the database the test above upgraded to the own-queue engine.
    const { rows: queued } = await client.query<{ deliveryId: string; endpointId: string }>(
      `SELECT "deliveryId", "endpointId" FROM "DeliveryJob" ORDER BY "deliveryId"`,
    );
    expect(queued).toHaveLength(3);
    // One of them is running when the upgrade comes (its worker stops with the old version).
    await client.query(
      `UPDATE "DeliveryJob" SET "leaseUntil" = now() + interval '10 seconds', runs = runs + 1 WHERE "deliveryId" = $1`,
      [queued[2]!.deliveryId],
    );
    const before = await client.query(
      `SELECT "deliveryId", trigger, try, runs FROM "DeliveryJob" ORDER BY "deliveryId"`,
    );

    await migrate(database.url);
    expect((await client.query(`SELECT to_regclass('"DeliveryJob"') AS t`)).rows[0].t).toBeNull();

    const pool = new pg.Pool({ connectionString: database.url, max: 4 });
    // Two processes start at once: the tries are moved once.
    const queues = await Promise.all(
      [0, 1].map(() =>
        startQueue({
          url: database.url,
          pool,
          logger: createLogger('silent'),
          supervise: false,
          superviseIntervalSeconds: 60,
        }),
      ),
    );
    try {
      expect((await client.query(`SELECT to_regnamespace('dispatch_upgrade') AS s`)).rows[0].s).toBeNull();
      const { rows: jobs } = await client.query(
        `SELECT data->>'d' AS "deliveryId", group_id AS "endpointId", data->>'t' AS t, (data->>'n')::int AS n,
                COALESCE((data->>'r')::int, 0) AS r, start_after <= now() AS due
         FROM pgboss.job WHERE name = $1 ORDER BY data->>'d'`,
        [DELIVERY_QUEUE],
      );
      expect(jobs).toEqual(
        before.rows.map((row) => ({
          deliveryId: row.deliveryId,
          endpointId: queued[0]!.endpointId,
          t: row.trigger === 'MANUAL' ? 'M' : 'S',
          n: row.try,
          r: row.runs,
          // The deferred retry (try 3) stays deferred.
          due: row.try !== 3,
        })),
      );
      // A fetch sees the running one as run before: its run closes the attempt it may have left.
      const fetched = await queues[0]!.boss.fetch(DELIVERY_QUEUE, { batchSize: 10 });
      expect(fetched).toHaveLength(2);
    } finally {
      for (const queue of queues) await queue.stop();
      await pool.end();
    }
  });
});
