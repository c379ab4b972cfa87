import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { newId } from '../../src/domain/ids.ts';
import type { AttemptEvent, MessageEvent } from '../../src/live/bus.ts';
import { createPgLiveBus, LIVE_APPLICATION_NAME } from '../../src/live/pg-bus.ts';
import { createLogger } from '../../src/logger.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type Feed, subscribeSse, subscribeWs, wsClient } from '../support/live.ts';

const ATTEMPTS = 'subscription ($appId: ID!) { attemptUpdated(appId: $appId) { id status } }';
const MESSAGES = 'subscription ($appId: ID!) { messageCreated(appId: $appId) { id messageId } }';
type AttemptData = { attemptUpdated: { id: string; status: string } };
type MessageData = { messageCreated: { id: string; messageId: string } };

/** The codes of a feed's errors, in order. */
const codes = (feed: Feed<unknown>) => feed.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code);

/** A counter of the Dispatch process's /metrics, by field. */
async function counter(baseUrl: string, name: string, field: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return Number(new RegExp(`^${name}\\{field="${field}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

/**
 * The API process's LISTEN connection is killed under open subscriptions.
 * New connections to the test's database are refused meanwhile (ALLOW_CONNECTIONS),
 * so the bus stays down, deterministically, until the test lets it back.
 */
describe('live feed interrupted: the LISTEN connection is lost', () => {
  let t: TestDispatch;
  let admin: pg.Client;
  let database: string;
  let publisherPool: pg.Pool;
  let publisher: ReturnType<typeof createPgLiveBus>;
  let appId: string;
  let recipientId: string;
  let messageId: string;
  let endpointId: string;
  let deliveryId: string;
  let messages = 0;

  /** An attempt row as a worker writes it, and the event it publishes. */
  const attempt = async (): Promise<AttemptEvent> => {
    const row = await t.dispatch.db.prisma.attempt.create({
      data: {
        id: newId('Attempt'),
        appId,
        recipientId,
        messageId,
        endpointId,
        deliveryId,
        url: 'http://127.0.0.1:9/a',
        status: 'SENDING',
      },
    });
    return { attemptId: row.id, appId, recipientId, messageId, endpointId, status: 'SENDING' };
  };
  /** A new message, sent through the API; its event is published as the API process does. */
  const message = async (): Promise<MessageEvent> => {
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_a', eventType: 'invoice.paid', data: { n: ++messages } },
    });
    return { messageId: sendMessage.message.id, appId, recipientId };
  };
  const allowConnections = (allow: boolean) =>
    admin.query(`ALTER DATABASE ${admin.escapeIdentifier(database)} WITH ALLOW_CONNECTIONS ${allow}`);

  beforeAll(async () => {
    t = await startTestDispatch();
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Interrupted' } });
    appId = createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.paid' } });
    // Disabled: the engine delivers nothing; the attempts are rows the test writes.
    const { createEndpoint } = await t.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'customer_a', url: 'http://127.0.0.1:9/a', disabled: true },
    });
    endpointId = createEndpoint.id;
    const first = await message();
    messageId = first.messageId;
    recipientId = (await t.dispatch.db.prisma.message.findUniqueOrThrow({ where: { id: messageId } })).recipientId;
    deliveryId = (
      await t.dispatch.db.prisma.delivery.create({
        data: { id: newId('Delivery'), appId, recipientId, messageId, endpointId },
      })
    ).id;
    // Another process's bus, as a worker's is; its one connection is made now and outlives the refusal.
    publisherPool = new pg.Pool({ connectionString: t.dispatch.db.url, max: 1, idleTimeoutMillis: 0 });
    publisher = createPgLiveBus({
      url: t.dispatch.db.url,
      pool: publisherPool,
      logger: createLogger('warn', 'publisher'),
      listen: false,
    });
    // From another database: PostgreSQL does not let a session refuse connections to its own.
    admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
    await admin.connect();
    database = new URL(t.dispatch.db.url).pathname.slice(1);
    await publisherPool.query('SELECT 1');
  });

  afterAll(async () => {
    await allowConnections(true).catch(() => undefined);
    await admin?.end();
    await publisher?.close();
    await publisherPool?.end();
    await t?.stop();
  });

  it('ends every open subscription (graphql-ws and SSE, both fields) with FEED_INTERRUPTED, refuses new ones while down, and takes new ones once back', async () => {
    const closes: { code: number; reason: string }[] = [];
    const socket = wsClient(t.url, t.apiKey, { onClosed: (event) => closes.push(event) });
    const sse: { close(): void }[] = [];
    try {
      let added = t.dispatch.live.listenersAdded();
      const wsAttempts = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      const wsMessages = subscribeWs<MessageData>(socket, MESSAGES, { appId });
      const sseAttempts = await subscribeSse<AttemptData>(t.url, t.apiKey, ATTEMPTS, { appId });
      const sseMessages = await subscribeSse<MessageData>(t.url, t.apiKey, MESSAGES, { appId });
      sse.push(sseAttempts, sseMessages);
      await t.dispatch.live.whenListenersAdded((added += 4));
      const open = [wsAttempts, wsMessages, sseAttempts, sseMessages];

      // All four are live: each receives an event published before the loss.
      const before = await attempt();
      const sent = await message();
      await publisher.publishAttempt(before);
      await publisher.publishMessage(sent);
      for (const feed of [wsAttempts, sseAttempts])
        expect(((await feed.nextData()) as AttemptData).attemptUpdated.id).toBe(before.attemptId);
      for (const feed of [wsMessages, sseMessages])
        expect(((await feed.nextData()) as MessageData).messageCreated.id).toBe(sent.messageId);

      const interruptedBefore = {
        attemptUpdated: await counter(t.url, 'dispatch_live_subscriptions_interrupted_total', 'attemptUpdated'),
        messageCreated: await counter(t.url, 'dispatch_live_subscriptions_interrupted_total', 'messageCreated'),
      };
      await allowConnections(false);
      const killed = await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = $2',
        [LIVE_APPLICATION_NAME, database],
      );
      expect(killed.rowCount).toBe(1);

      // Each ends with one last result, an error with the code and no data, then completes.
      for (const feed of open) await feed.until((f) => f.ended !== undefined, 5_000, 'the interrupted subscription');
      for (const feed of open) {
        expect(codes(feed)).toEqual(['FEED_INTERRUPTED']);
        const last = feed.results.at(-1)!;
        expect(last.data ?? null).toBeNull();
        expect(last.errors![0]!.message).toMatch(/events may have been missed: subscribe again, then re-read/);
        expect(feed.ended!.error).toBeUndefined();
      }
      // The socket stays open: the client resubscribes on it.
      expect(closes).toEqual([]);
      expect(t.dispatch.live.isListening).toBe(false);
      expect(t.dispatch.live.listenerCount()).toBe(0);

      // While the bus is down a new subscription fails at once rather than wait in silence.
      const missed = await attempt();
      await publisher.publishAttempt(missed);
      const refusedWs = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      const refusedSse = await subscribeSse<MessageData>(t.url, t.apiKey, MESSAGES, { appId });
      for (const feed of [refusedWs, refusedSse]) {
        await feed.until((f) => f.ended !== undefined, 5_000, 'the refused subscription');
        expect(codes(feed)).toEqual(['FEED_INTERRUPTED']);
        expect(feed.results.at(-1)!.errors![0]!.message).toMatch(/reconnecting/);
        expect(feed.data).toEqual([]);
      }
      expect(t.dispatch.live.listenersAdded()).toBe(added);
      expect(await counter(t.url, 'dispatch_live_subscriptions_interrupted_total', 'attemptUpdated')).toBe(
        interruptedBefore.attemptUpdated + 3,
      );
      expect(await counter(t.url, 'dispatch_live_subscriptions_interrupted_total', 'messageCreated')).toBe(
        interruptedBefore.messageCreated + 3,
      );

      // Back: the bus reconnects by itself; resubscribed (the same socket), both transports receive new events.
      await allowConnections(true);
      await t.dispatch.live.listening();
      const again = [
        subscribeWs<AttemptData>(socket, ATTEMPTS, { appId }),
        await subscribeSse<AttemptData>(t.url, t.apiKey, ATTEMPTS, { appId }),
      ];
      const againMessages = [
        subscribeWs<MessageData>(socket, MESSAGES, { appId }),
        await subscribeSse<MessageData>(t.url, t.apiKey, MESSAGES, { appId }),
      ];
      sse.push(
        again[1] as Feed<AttemptData> & { close(): void },
        againMessages[1] as Feed<MessageData> & { close(): void },
      );
      await t.dispatch.live.whenListenersAdded((added += 4));
      const after = await attempt();
      const later = await message();
      await publisher.publishAttempt(after);
      await publisher.publishMessage(later);
      for (const feed of again) expect((await feed.nextData()).attemptUpdated.id).toBe(after.attemptId);
      for (const feed of againMessages) expect((await feed.nextData()).messageCreated.id).toBe(later.messageId);
      // What was published while down is gone for good: that is what the error said.
      for (const feed of again) expect(feed.data.map((d) => d.attemptUpdated.id)).not.toContain(missed.attemptId);
      for (const feed of [...again, ...againMessages]) expect(feed.ended).toBeUndefined();
      expect(closes).toEqual([]);
    } finally {
      for (const s of sse) s.close();
      await socket.dispose();
    }
  });
});
