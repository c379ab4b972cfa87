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
import { liveSubscribers, subscribeWs, wsClient } from '../support/live.ts';
import { type OwnPostgres, startOwnPostgres } from '../support/own-postgres.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';

type AttemptData = { attemptUpdated: { id: string; status: string } };
const ATTEMPTS = 'subscription($appId: ID!) { attemptUpdated(appId: $appId) { id status } }';

/** The api process's count of LISTEN connections re-established, from its /metrics. */
async function reconnects(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return Number(/^dispatch_live_reconnects_total (\d+)/m.exec(text)?.[1] ?? 0);
}

/**
 * A whole PostgreSQL restart under an open subscription: the server goes away
 * (every connection of the api process with it) and comes back on the same
 * data and port. The publisher is another process's bus, as a worker's is.
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

  it('reconnects by itself; the open subscription ends with FEED_INTERRUPTED and a new one receives events published after the restart', async () => {
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
    /** An attempt row as a worker writes it, and its event. */
    const attempt = async (): Promise<AttemptEvent> => {
      const row = await db.prisma.attempt.create({
        data: {
          id: newId('Attempt'),
          appId,
          recipientId: message.recipientId,
          messageId: message.id,
          endpointId: endpoint.id,
          deliveryId: delivery.id,
          url: 'http://127.0.0.1:9/a',
          status: 'SENDING',
        },
      });
      return {
        attemptId: row.id,
        appId,
        recipientId: message.recipientId,
        messageId: message.id,
        endpointId: endpoint.id,
        status: 'SENDING',
      };
    };
    const publishFrom = (pool: pg.Pool) =>
      createPgLiveBus({ url: postgres.url, pool, logger: createLogger('error', 'restart-publisher'), listen: false });
    // pool.end() resolves before its clients' sockets have closed; a server
    // stopped right after may still reach one of them with an error, which
    // with no listener would be an uncaught exception in this test process.
    const publisherPool = () => {
      const pool = new pg.Pool({ connectionString: postgres.url, max: 1 });
      pool.on('error', () => undefined);
      pool.on('connect', (client) => client.on('error', () => undefined));
      return pool;
    };

    const socket = wsClient(api.url, apiKey);
    const feed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
    try {
      await expect.poll(() => liveSubscribers(api.url, 'attemptUpdated'), { timeout: 5_000 }).toBe(1);
      const before = await attempt();
      const firstPool = publisherPool();
      const firstBus = publishFrom(firstPool);
      await firstBus.publishAttempt(before);
      await feed.until((f) => f.results.length >= 1, 5_000, 'the attempt before the restart');
      await firstBus.close();
      await firstPool.end();
      const reconnectsBefore = await reconnects(api.url);

      // This process's own connections are closed first; the api process's are not.
      await db.close();
      await postgres.stop();
      await postgres.start(); // on the same data and port
      db = connectDatabase(postgres.url, { max: 2 });

      // The open subscription learns that it may have missed events: the one before, then the error, then the end.
      await feed.until((f) => f.ended !== undefined, 20_000, 'the interrupted subscription');
      expect(feed.data.map((d) => d.attemptUpdated.id)).toEqual([before.attemptId]);
      expect(feed.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toEqual(['FEED_INTERRUPTED']);
      // The api process notices the lost LISTEN connection and makes a new one, with no help.
      await expect
        .poll(() => reconnects(api.url), { timeout: 20_000, interval: 200 })
        .toBeGreaterThan(reconnectsBefore);
      const again = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      await expect.poll(() => liveSubscribers(api.url, 'attemptUpdated'), { timeout: 5_000 }).toBe(1);
      const after = await attempt();
      const pool = publisherPool();
      const bus = publishFrom(pool);
      try {
        await bus.publishAttempt(after);
        await again.until((f) => f.results.length >= 1, 5_000, 'the attempt after the restart');
      } finally {
        await bus.close();
        await pool.end();
      }
      expect(again.ended).toBeUndefined();
      expect(again.data.map((d) => d.attemptUpdated.id)).toEqual([after.attemptId]);
    } finally {
      await socket.dispose();
    }
  }, 60_000);
});
