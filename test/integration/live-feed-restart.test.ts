import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchClient } from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { newId } from '../../src/domain/ids.ts';
import type { AttemptEvent } from '../../src/live/bus.ts';
import { createPgLiveBus } from '../../src/live/pg-bus.ts';
import { createLogger } from '../../src/logger.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { liveSubscribers, resumableWs } from '../support/live.ts';
import { type OwnPostgres, startOwnPostgres } from '../support/own-postgres.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';

/** The api process's count of LISTEN connections re-established, from its /metrics. */
async function reconnects(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return Number(/^dispatch_live_reconnects_total (\d+)/m.exec(text)?.[1] ?? 0);
}

/**
 * A whole PostgreSQL restart under an open subscription: the server goes away
 * (every connection of the api process with it) and comes back on the same
 * data and port. The writer is another process, as a worker is. The
 * subscriber is the client docs/live-feed.md describes: it resubscribes with
 * its last cursor whenever its subscription or socket ends.
 */
describe('live feed across a PostgreSQL restart', () => {
  let postgres: OwnPostgres;
  let _port: number;
  let api: DispatchProcess;
  let db: Database;
  let apiKey: string;

  beforeAll(async () => {
    // A PostgreSQL of this test's own, so stopping it touches no other test.
    postgres = await startOwnPostgres('live-restart');
    _port = postgres.port;
    api = await spawnDispatch({
      DATABASE_URL: postgres.url,
      DISPATCH_ROLE: 'api',
      DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
    });
    db = connectDatabase(postgres.url, { max: 2 });
    apiKey = (await createApiKey(db.prisma, { workspaceName: 'Live restart' })).token;
  }, 90_000);

  afterAll(async () => {
    await api?.stop();
    await db?.close();
    await postgres?.remove();
  });

  it('a subscriber on the api process receives every attempt exactly once, in order: before the restart, while the api process is reconnecting, and after', async () => {
    const client = createDispatchClient({ url: api.url, apiKey });
    const appId = await createDeliveryApp(client);
    const endpoint = await createEndpoint(client, {
      appId,
      recipientId: 'customer_a',
      url: 'http://127.0.0.1:9/a',
      disabled: true,
    });
    const message = await db.prisma.message.findUniqueOrThrow({
      where: { id: (await send(client, { appId, recipientId: 'customer_a' })).id },
    });
    const delivery = await db.prisma.delivery.create({
      data: {
        id: newId('Delivery'),
        appId,
        recipientId: message.recipientId,
        messageId: message.id,
        endpointId: endpoint.id,
      },
    });
    // pool.end() resolves before its clients' sockets have closed; a server
    // stopped right after may still reach one of them with an error, which
    // with no listener would be an uncaught exception in this test process.
    const publisherPool = () => {
      const pool = new pg.Pool({ connectionString: postgres.url, max: 1 });
      pool.on('error', () => undefined);
      pool.on('connect', (c) => c.on('error', () => undefined));
      return pool;
    };
    /** What was written, in order: each attempt starts (SENDING) and ends (SUCCEEDED), as a worker writes them. */
    const written: string[] = [];
    /** Writes `n` attempts, start and end each, from another process's pool, with a worker's notifications. */
    const attempts = async (n: number) => {
      const pool = publisherPool();
      const bus = createPgLiveBus({
        url: postgres.url,
        pool,
        logger: createLogger('error', 'restart-publisher'),
        listen: false,
      });
      try {
        for (let i = 0; i < n; i++) {
          const id = newId('Attempt');
          await pool.query(
            `INSERT INTO "Attempt" (id, "appId", "recipientId", "messageId", "endpointId", "deliveryId", url, status)
             VALUES ($1, $2, $3, $4, $5, $6, 'http://127.0.0.1:9/a', 'SENDING')`,
            [id, appId, message.recipientId, message.id, endpoint.id, delivery.id],
          );
          written.push(`${id} SENDING`);
          const event: AttemptEvent = {
            attemptId: id,
            appId,
            recipientId: message.recipientId,
            messageId: message.id,
            endpointId: endpoint.id,
            status: 'SENDING',
          };
          await bus.publishAttempt(event);
          await pool.query(`UPDATE "Attempt" SET status = 'SUCCEEDED', "finishedAt" = now() WHERE id = $1`, [id]);
          written.push(`${id} SUCCEEDED`);
          await bus.publishAttempt({ ...event, status: 'SUCCEEDED' });
        }
      } finally {
        await bus.close();
        await pool.end();
      }
    };

    const feed = resumableWs<{ id: string; status: string; cursor: string }>(
      api.url,
      apiKey,
      'subscription($appId: ID!, $after: Cursor) { attemptUpdated(appId: $appId, after: $after) { id status cursor } }',
      'attemptUpdated',
      { appId },
    );
    const seen = () => feed.events.map((e) => `${e.id} ${e.status}`);
    try {
      await expect.poll(() => liveSubscribers(api.url, 'attemptUpdated'), { timeout: 10_000 }).toBe(1);
      await attempts(10);
      await feed.until(() => feed.events.length >= 20, 10_000, 'the attempts before the restart');
      const reconnectsBefore = await reconnects(api.url);

      // This process's own connections are closed first; the api process's are not.
      await db.close();
      await postgres.stop();
      await postgres.start(); // on the same data and port
      db = connectDatabase(postgres.url, { max: 2 });

      // At once, while the api process may still be reconnecting (its LISTEN connection and pool).
      await attempts(10);
      await expect
        .poll(() => reconnects(api.url), { timeout: 20_000, interval: 200 })
        .toBeGreaterThan(reconnectsBefore);
      await attempts(10);
      await feed.until(() => feed.events.length >= written.length, 20_000, 'every attempt');
      // Every start and end, once each, in the order written.
      expect(seen()).toEqual(written);
      expect(feed.errors.map((e) => e.extensions?.code)).not.toContain('FEED_INTERRUPTED');
      process.stdout.write(`live feed restart: resubscribed ${feed.resubscribed} times\n`);
    } finally {
      await feed.stop();
    }
  }, 90_000);
});
