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

const ATTEMPTS = 'subscription ($appId: ID!) { attemptUpdated(appId: $appId) { id status cursor } }';
const ATTEMPTS_AFTER =
  'subscription ($appId: ID!, $after: Cursor) { attemptUpdated(appId: $appId, after: $after) { id status cursor } }';
const MESSAGES = 'subscription ($appId: ID!) { messageCreated(appId: $appId) { id messageId } }';
type AttemptData = { attemptUpdated: { id: string; status: string; cursor: string } };
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
describe('live feed with its LISTEN connection lost', () => {
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

  it('loses nothing on attemptUpdated and messageCreated (graphql-ws and SSE): open subscriptions carry on, events written while the bus is down arrive once, new subscriptions are taken meanwhile', async () => {
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
      const attemptFeeds = [wsAttempts, sseAttempts];
      const messageFeeds = [wsMessages, sseMessages];

      // All four are live: each receives an event published before the loss.
      const before = await attempt();
      const sent = await message();
      await publisher.publishAttempt(before);
      await publisher.publishMessage(sent);
      for (const feed of attemptFeeds) await feed.until((f) => f.data.length >= 1, 5_000, 'the first attempt');
      for (const feed of messageFeeds) await feed.until((f) => f.data.length >= 1, 5_000, 'the first message');

      const interruptedBefore = await counter(t.url, 'dispatch_live_subscriptions_interrupted_total', 'attemptUpdated');
      await allowConnections(false);
      const killed = await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = $2',
        [LIVE_APPLICATION_NAME, database],
      );
      expect(killed.rowCount).toBe(1);
      await expect.poll(() => t.dispatch.live.isListening, { timeout: 5_000 }).toBe(false);

      // Written while the api process hears no notification: read from the event log all the same.
      const missed = await attempt();
      const missedMessage = await message();
      await publisher.publishAttempt(missed);
      await publisher.publishMessage(missedMessage);
      // A new subscription is taken while the bus is down, resuming after the first attempt.
      const resumed = subscribeWs<AttemptData>(socket, ATTEMPTS_AFTER, {
        appId,
        after: wsAttempts.data[0]!.attemptUpdated.cursor,
      });
      for (const feed of [...attemptFeeds, resumed])
        await feed.until(
          (f) => f.data.some((d) => d.attemptUpdated.id === missed.attemptId),
          10_000,
          'the missed attempt',
        );
      for (const feed of messageFeeds)
        await feed.until((f) => f.data.length >= 2, 10_000, 'the message sent while the bus was down');

      // Back: the bus reconnects by itself; the same subscriptions receive what comes next.
      await allowConnections(true);
      await t.dispatch.live.listening();
      const after = await attempt();
      const later = await message();
      await publisher.publishAttempt(after);
      await publisher.publishMessage(later);
      for (const feed of [...attemptFeeds, resumed])
        await feed.until(
          (f) => f.data.some((d) => d.attemptUpdated.id === after.attemptId),
          5_000,
          'the attempt after',
        );
      for (const feed of messageFeeds) await feed.until((f) => f.data.length >= 3, 5_000, 'the message after');

      // Each once, in order, never interrupted.
      for (const feed of attemptFeeds)
        expect(feed.data.map((d) => d.attemptUpdated.id)).toEqual([
          before.attemptId,
          missed.attemptId,
          after.attemptId,
        ]);
      expect(resumed.data.map((d) => d.attemptUpdated.id)).toEqual([missed.attemptId, after.attemptId]);
      for (const feed of messageFeeds)
        expect(feed.data.map((d) => d.messageCreated.id)).toEqual([
          sent.messageId,
          missedMessage.messageId,
          later.messageId,
        ]);
      for (const feed of [...attemptFeeds, ...messageFeeds, resumed]) {
        expect(codes(feed)).toEqual([]);
        expect(feed.ended).toBeUndefined();
      }
      expect(await counter(t.url, 'dispatch_live_subscriptions_interrupted_total', 'attemptUpdated')).toBe(
        interruptedBefore,
      );
      expect(closes).toEqual([]);
    } finally {
      for (const s of sse) s.close();
      await socket.dispose();
    }
  });
});
