import type { Client } from 'graphql-ws';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
  type DispatchClient,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import type { PrismaClient } from '../../src/db/client.ts';
import { newId } from '../../src/domain/ids.ts';
import { liveReconnects } from '../../src/live/metrics.ts';
import { createPgLiveBus, LIVE_APPLICATION_NAME, type PgLiveBus } from '../../src/live/pg-bus.ts';
import { createLogger } from '../../src/logger.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { subscribeSse, subscribeWs, wsClient } from '../support/live.ts';

const ATTEMPTS = /* GraphQL */ `
  subscription Attempts($appId: ID!, $recipientId: String, $messageId: ID, $endpointId: ID) {
    attemptUpdated(appId: $appId, recipientId: $recipientId, messageId: $messageId, endpointId: $endpointId) {
      id
      status
      responseStatusCode
      finishedAt
      endpoint { id url }
      message { id messageId recipientId }
    }
  }
`;

const MESSAGES = /* GraphQL */ `
  subscription Messages($appId: ID!, $recipientId: String) {
    messageCreated(appId: $appId, recipientId: $recipientId) { id messageId eventType recipientId data }
  }
`;

type AttemptData = {
  attemptUpdated: {
    id: string;
    status: string;
    responseStatusCode: number | null;
    finishedAt: string | null;
    endpoint: { id: string; url: string };
    message: { id: string; messageId: string; recipientId: string };
  };
};
type MessageData = {
  messageCreated: { id: string; messageId: string; eventType: string; recipientId: string; data: unknown };
};

interface Side {
  uid: string;
  recipientId: string;
  endpointId: string;
  messageId: string;
  messageUid: string;
}

interface Fixture {
  appId: string;
  a: Side;
  b: Side;
}

/**
 * An app with recipients A and B, one endpoint and one message each. The
 * endpoints are disabled so no delivery is made by the engine: the attempts
 * of these tests are rows the test writes itself, published like a worker does.
 */
async function makeFixture(t: TestDispatch, client: DispatchClient = t.client): Promise<Fixture> {
  const { createApp } = await client.request(CreateAppDocument, { input: { name: `Live ${Math.random()}` } });
  await client.request(CreateEventTypeDocument, { input: { appId: createApp.id, name: 'invoice.paid' } });
  const side = async (uid: string): Promise<Side> => {
    const { createEndpoint } = await client.request(CreateEndpointDocument, {
      input: { appId: createApp.id, recipientId: uid, url: `http://127.0.0.1:9/${uid}`, disabled: true },
    });
    const messageUid = `order-${uid}-${Math.random().toString(36).slice(2)}`;
    const { sendMessage } = await client.request(SendMessageDocument, {
      input: { appId: createApp.id, recipientId: uid, eventType: 'invoice.paid', data: { uid }, messageId: messageUid },
    });
    const recipient = await t.dispatch.db.prisma.recipient.findFirstOrThrow({ where: { appId: createApp.id, uid } });
    return {
      uid,
      recipientId: recipient.id,
      endpointId: createEndpoint.id,
      messageId: sendMessage.message.id,
      messageUid,
    };
  };
  return { appId: createApp.id, a: await side('customer_a'), b: await side('customer_b') };
}

/** Writes an attempt as the delivery engine would, and returns the event a worker publishes for it. */
async function insertAttempt(
  prisma: PrismaClient,
  appId: string,
  side: Side,
  status: 'SENDING' | 'SUCCEEDED' | 'FAILED' = 'SENDING',
) {
  const delivery = await prisma.delivery.upsert({
    where: { messageId_endpointId: { messageId: side.messageId, endpointId: side.endpointId } },
    create: {
      id: newId('Delivery'),
      appId,
      recipientId: side.recipientId,
      messageId: side.messageId,
      endpointId: side.endpointId,
    },
    update: {},
  });
  const attempt = await prisma.attempt.create({
    data: {
      id: newId('Attempt'),
      appId,
      recipientId: side.recipientId,
      messageId: side.messageId,
      endpointId: side.endpointId,
      deliveryId: delivery.id,
      url: `http://127.0.0.1:9/${side.uid}`,
      status,
      ...(status === 'SENDING'
        ? {}
        : { responseStatusCode: status === 'SUCCEEDED' ? 200 : 500, durationMs: 3, finishedAt: new Date() }),
    },
  });
  return {
    attemptId: attempt.id,
    appId,
    recipientId: side.recipientId,
    messageId: side.messageId,
    endpointId: side.endpointId,
    status,
  } as const;
}

/** Another process's bus: its own pool and no LISTEN, like a worker. */
function otherProcessBus(url: string): { bus: PgLiveBus; close(): Promise<void> } {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  const bus = createPgLiveBus({ url, pool, logger: createLogger('warn', 'other-process'), listen: false });
  return {
    bus,
    async close() {
      await bus.close();
      await pool.end();
    },
  };
}

describe('live delivery feed', () => {
  let t: TestDispatch;
  let f: Fixture;
  let worker: ReturnType<typeof otherProcessBus>;
  const open: { dispose(): unknown }[] = [];

  /** Waits until the API process has `n` more live subscriptions than before. */
  const subscribed = (before: number, n = 1) => t.dispatch.live.whenListenersAdded(before + n);
  const ws = (token: string | undefined) => {
    const client = wsClient(t.url, token);
    open.push(client);
    return client;
  };

  beforeAll(async () => {
    t = await startTestDispatch();
    f = await makeFixture(t);
    worker = otherProcessBus(t.dispatch.db.url);
  });
  afterAll(async () => {
    for (const c of open) await c.dispose();
    await worker?.close();
    await t?.stop();
  });

  it('sends an attempt over graphql-ws as SENDING, then as SUCCEEDED, published by another process, within a second', async () => {
    const before = t.dispatch.live.listenersAdded();
    const feed = subscribeWs<AttemptData>(ws(t.apiKey), ATTEMPTS, { appId: f.appId });
    await subscribed(before);

    const sending = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a, 'SENDING');
    const publishedAt = performance.now();
    await worker.bus.publishAttempt(sending);
    // The attempt finishes before the subscriber has read its start: the start still shows as SENDING, without an outcome.
    await t.dispatch.db.prisma.attempt.update({
      where: { id: sending.attemptId },
      data: { status: 'SUCCEEDED', responseStatusCode: 204, durationMs: 5, finishedAt: new Date() },
    });
    await worker.bus.publishAttempt({ ...sending, status: 'SUCCEEDED' });

    const first = await feed.nextData(1_000);
    const second = await feed.nextData(1_000);
    expect(feed.receivedAt[1]! - publishedAt).toBeLessThan(1_000);
    expect(first.attemptUpdated).toEqual({
      id: sending.attemptId,
      status: 'SENDING',
      responseStatusCode: null,
      finishedAt: null,
      endpoint: { id: f.a.endpointId, url: 'http://127.0.0.1:9/customer_a' },
      message: { id: f.a.messageId, messageId: f.a.messageUid, recipientId: 'customer_a' },
    });
    expect(second.attemptUpdated).toMatchObject({
      id: sending.attemptId,
      status: 'SUCCEEDED',
      responseStatusCode: 204,
    });
    expect(second.attemptUpdated.finishedAt).not.toBeNull();
    feed.unsubscribe();
  });

  it('filters by recipient, message (msg_ id or the caller messageId) and endpoint', async () => {
    const client = ws(t.apiKey);
    const before = t.dispatch.live.listenersAdded();
    const byRecipient = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, recipientId: 'customer_b' });
    const byMessageUid = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, messageId: f.b.messageUid });
    const byMessageId = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, messageId: f.b.messageId });
    const byEndpoint = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, endpointId: f.b.endpointId });
    await subscribed(before, 4);

    // A's attempt first: none of them may see it; B's then arrives as their first event.
    await worker.bus.publishAttempt(await insertAttempt(t.dispatch.db.prisma, f.appId, f.a));
    const ofB = await insertAttempt(t.dispatch.db.prisma, f.appId, f.b);
    await worker.bus.publishAttempt(ofB);
    for (const feed of [byRecipient, byMessageUid, byMessageId, byEndpoint]) {
      const data = await feed.nextData(1_000);
      expect(data.attemptUpdated.id).toBe(ofB.attemptId);
      feed.unsubscribe();
    }
  });

  it('watches a recipient and a messageId that do not exist yet, and sees them once they do', async () => {
    const before = t.dispatch.live.listenersAdded();
    const client = ws(t.apiKey);
    const byRecipient = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, recipientId: 'customer_new' });
    const byMessage = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, messageId: 'order-not-sent-yet' });
    await subscribed(before, 2);
    const { createEndpoint } = await t.client.request(CreateEndpointDocument, {
      input: { appId: f.appId, recipientId: 'customer_new', url: 'http://127.0.0.1:9/new', disabled: true },
    });
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: {
        appId: f.appId,
        recipientId: 'customer_new',
        eventType: 'invoice.paid',
        data: {},
        messageId: 'order-not-sent-yet',
      },
    });
    const recipient = await t.dispatch.db.prisma.recipient.findFirstOrThrow({
      where: { appId: f.appId, uid: 'customer_new' },
    });
    const side: Side = {
      uid: 'customer_new',
      recipientId: recipient.id,
      endpointId: createEndpoint.id,
      messageId: sendMessage.message.id,
      messageUid: 'order-not-sent-yet',
    };
    await worker.bus.publishAttempt(await insertAttempt(t.dispatch.db.prisma, f.appId, f.a));
    const event = await insertAttempt(t.dispatch.db.prisma, f.appId, side);
    await worker.bus.publishAttempt(event);
    expect((await byRecipient.nextData(1_000)).attemptUpdated.id).toBe(event.attemptId);
    expect((await byMessage.nextData(1_000)).attemptUpdated.id).toBe(event.attemptId);
    byRecipient.unsubscribe();
    byMessage.unsubscribe();
  });

  it("gives a portal token of recipient A only A's attempts, even when it asks for the whole app", async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: f.appId, recipientId: 'customer_a' },
    });
    expect(createPortalSession.token).toMatch(/^dpt_/);
    const client = ws(createPortalSession.token);
    const before = t.dispatch.live.listenersAdded();
    const wholeApp = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId });
    const byBEndpointOfA = subscribeWs<AttemptData>(client, ATTEMPTS, { appId: f.appId, messageId: f.b.messageUid });
    await subscribed(before, 2);

    const ofB = await insertAttempt(t.dispatch.db.prisma, f.appId, f.b);
    await worker.bus.publishAttempt(ofB);
    // Even an event that lies about its recipient is checked against the row's own scope when loaded.
    await worker.bus.publishAttempt({ ...ofB, recipientId: f.a.recipientId });
    const ofA = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a);
    await worker.bus.publishAttempt(ofA);
    const data = await wholeApp.nextData(1_000);
    expect(data.attemptUpdated.id).toBe(ofA.attemptId);
    expect(data.attemptUpdated.message.recipientId).toBe('customer_a');

    // B's message id is matched only within A's scope: nothing ever arrives for it, not even the lie.
    const mark = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a);
    await worker.bus.publishAttempt(mark);
    expect((await wholeApp.nextData(1_000)).attemptUpdated.id).toBe(mark.attemptId);
    expect(byBEndpointOfA.results).toEqual([]);
    wholeApp.unsubscribe();
    byBEndpointOfA.unsubscribe();

    // Asking for B by name, or for B's endpoint, answers like a missing one.
    for (const variables of [
      { appId: f.appId, recipientId: 'customer_b' },
      { appId: f.appId, recipientId: 'customer_nobody' },
      { appId: f.appId, endpointId: f.b.endpointId },
      { appId: f.appId, endpointId: 'ep_missing' },
    ]) {
      const refused = subscribeWs<AttemptData>(client, ATTEMPTS, variables);
      const result = await refused.next(2_000);
      expect(
        result.errors?.map((e) => e.extensions?.code),
        JSON.stringify(variables),
      ).toEqual(['NOT_FOUND']);
    }
  });

  it("refuses an operator of another workspace a subscription to this workspace's app, like a missing app", async () => {
    const other = await t.newWorkspace();
    const client = ws(other.apiKey);
    for (const variables of [{ appId: f.appId }, { appId: 'app_missing' }]) {
      const feed = subscribeWs<AttemptData>(client, ATTEMPTS, variables);
      const result = await feed.next(2_000);
      expect(result.errors?.map((e) => e.extensions?.code)).toEqual(['NOT_FOUND']);
      expect(result.errors?.[0]?.message).toBe('app not found');
    }
    const messages = subscribeWs<MessageData>(client, MESSAGES, { appId: f.appId });
    expect((await messages.next(2_000)).errors?.map((e) => e.extensions?.code)).toEqual(['NOT_FOUND']);
  });

  it('closes a socket without a valid token at connection time with 4401', async () => {
    for (const token of [undefined, 'dk_not_a_key', 'dpt_not_a_session']) {
      const closed = new Promise<{ code: number; reason: string }>((resolve) => {
        const client = wsClient(t.url, token, { onClosed: resolve });
        open.push(client);
      });
      const event = await closed;
      expect(event.code).toBe(4401);
      expect(event.reason).toMatch(/^UNAUTHENTICATED/);
    }
  });

  it('serves the same feed over SSE, with the token in the Authorization header', async () => {
    const before = t.dispatch.live.listenersAdded();
    const operator = await subscribeSse<AttemptData>(t.url, t.apiKey, ATTEMPTS, { appId: f.appId });
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: f.appId, recipientId: 'customer_b' },
    });
    const portal = await subscribeSse<AttemptData>(t.url, createPortalSession.token, ATTEMPTS, { appId: f.appId });
    expect([operator.status, portal.status]).toEqual([200, 200]);
    await subscribed(before, 2);

    const ofA = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a);
    await worker.bus.publishAttempt(ofA);
    const ofB = await insertAttempt(t.dispatch.db.prisma, f.appId, f.b, 'FAILED');
    await worker.bus.publishAttempt(ofB);
    expect((await operator.nextData(1_000)).attemptUpdated.id).toBe(ofA.attemptId);
    expect((await operator.nextData(1_000)).attemptUpdated).toMatchObject({
      id: ofB.attemptId,
      status: 'FAILED',
      responseStatusCode: 500,
    });
    expect((await portal.nextData(1_000)).attemptUpdated.id).toBe(ofB.attemptId);
    const listening = t.dispatch.live.listenerCount();
    operator.close();
    portal.close();
    // Closing the stream ends the subscription on the server.
    await expect.poll(() => t.dispatch.live.listenerCount(), { timeout: 2_000 }).toBeLessThanOrEqual(listening - 2);

    const anonymous = await subscribeSse<AttemptData>(t.url, undefined, ATTEMPTS, { appId: f.appId });
    expect(anonymous.status).toBe(401);
    expect((await anonymous.next()).errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
  });

  it('announces new messages, including ones no endpoint receives, but not deduplicated sends', async () => {
    const before = t.dispatch.live.listenersAdded();
    const all = subscribeWs<MessageData>(ws(t.apiKey), MESSAGES, { appId: f.appId });
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: f.appId, recipientId: 'customer_a' },
    });
    const portal = await subscribeSse<MessageData>(t.url, createPortalSession.token, MESSAGES, { appId: f.appId });
    await subscribed(before, 2);

    const send = (recipientId: string, messageId: string) =>
      t.client.request(SendMessageDocument, {
        input: { appId: f.appId, recipientId, eventType: 'invoice.paid', data: { n: 1 }, messageId },
      });
    const lonely = await send('customer_without_endpoints', 'm-lonely');
    expect((await send('customer_without_endpoints', 'm-lonely')).sendMessage.deduplicated).toBe(true);
    const ofA = await send('customer_a', 'm-of-a');
    expect((await all.nextData(1_000)).messageCreated).toEqual({
      id: lonely.sendMessage.message.id,
      messageId: 'm-lonely',
      eventType: 'invoice.paid',
      recipientId: 'customer_without_endpoints',
      data: { n: 1 },
    });
    expect((await all.nextData(1_000)).messageCreated.id).toBe(ofA.sendMessage.message.id);
    expect((await portal.nextData(1_000)).messageCreated.id).toBe(ofA.sendMessage.message.id);
    all.unsubscribe();
    portal.close();
  });

  it('loses nothing when its LISTEN connection is killed: the open subscription carries on, and an attempt written while it is down arrives once', async () => {
    const socket = ws(t.apiKey);
    const before = t.dispatch.live.listenersAdded();
    const feed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId: f.appId });
    await subscribed(before);
    const reconnects = async () => (await liveReconnects.get()).values[0]?.value ?? 0;
    const reconnectsBefore = await reconnects();
    const admin = new pg.Client({ connectionString: t.dispatch.db.url });
    await admin.connect();
    let missed: Awaited<ReturnType<typeof insertAttempt>>;
    try {
      const killed = await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
        [LIVE_APPLICATION_NAME],
      );
      expect(killed.rowCount).toBe(1);
      // Written (and its notification sent) while the api process has no LISTEN connection.
      missed = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a);
      await worker.bus.publishAttempt(missed);
    } finally {
      await admin.end();
    }
    // The bus notices the loss and comes back on its own.
    await expect.poll(reconnects, { timeout: 5_000 }).toBe(reconnectsBefore + 1);
    expect(t.dispatch.live.isListening).toBe(true);
    const after = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a);
    await worker.bus.publishAttempt(after);
    await feed.until((x) => x.data.length >= 2, 5_000, 'both attempts');
    expect(feed.data.map((d) => d.attemptUpdated.id)).toEqual([missed.attemptId, after.attemptId]);
    expect(feed.results.flatMap((r) => r.errors ?? [])).toEqual([]);
    expect(feed.ended).toBeUndefined();
    feed.unsubscribe();
  });

  it('ends a portal subscription when its session expires, with no event needed: the socket closes with 4401', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: f.appId, recipientId: 'customer_a', expiresInSeconds: 2 },
    });
    const expiresAt = Date.parse(createPortalSession.expiresAt);
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      open.push(wsClient(t.url, createPortalSession.token, { onClosed: resolve })),
    );
    const before = t.dispatch.live.listenersAdded();
    const listening = t.dispatch.live.listenerCount();
    const feed = subscribeWs<AttemptData>(open.at(-1) as Client, ATTEMPTS, { appId: f.appId });
    // The subscription was open before the session ran out.
    await subscribed(before);
    const event = await closed;
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
    expect(event).toMatchObject({
      code: 4401,
      reason: expect.stringMatching(/^UNAUTHENTICATED: this portal session expired or was revoked/),
    });
    expect(feed.data).toEqual([]);
    await expect.poll(() => t.dispatch.live.listenerCount(), { timeout: 2_000 }).toBe(listening);
  });

  it("ends a portal session's open subscriptions when it is revoked, over graphql-ws and SSE; the next event is not delivered", async () => {
    const session = async () =>
      (await t.client.request(CreatePortalSessionDocument, { input: { appId: f.appId, recipientId: 'customer_b' } }))
        .createPortalSession.token;
    const [wsToken, sseToken] = [await session(), await session()];
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      open.push(wsClient(t.url, wsToken, { onClosed: resolve })),
    );
    const before = t.dispatch.live.listenersAdded();
    const viaWs = subscribeWs<AttemptData>(open.at(-1) as Client, ATTEMPTS, { appId: f.appId });
    const viaSse = await subscribeSse<AttemptData>(t.url, sseToken, ATTEMPTS, { appId: f.appId });
    const operator = subscribeWs<AttemptData>(ws(t.apiKey), ATTEMPTS, { appId: f.appId, recipientId: 'customer_b' });
    await subscribed(before, 3);
    try {
      const revoked = await t.client.raw(
        'mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }',
        {
          input: { appId: f.appId, recipientId: 'customer_b' },
        },
      );
      // These two, and any an earlier test left live.
      expect((revoked.data as { revokePortalSessions: number }).revokePortalSessions).toBeGreaterThanOrEqual(2);

      const attempt = await insertAttempt(t.dispatch.db.prisma, f.appId, f.b);
      await worker.bus.publishAttempt(attempt);
      // The operator's feed of the same recipient carries on; the portal's two end instead of receiving it.
      expect((await operator.nextData(1_000)).attemptUpdated.id).toBe(attempt.attemptId);
      expect(await closed).toMatchObject({ code: 4401, reason: expect.stringMatching(/^UNAUTHENTICATED/) });
      expect(viaWs.data).toEqual([]);
      await viaSse.until((f) => f.ended !== undefined, 5_000, 'the SSE subscription');
      expect(viaSse.data).toEqual([]);
      expect(viaSse.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
    } finally {
      operator.unsubscribe();
      viaSse.close();
    }
  });

  it("ends a revoked credential's open feeds on the revoking API process at once, with no event needed (portal session over graphql-ws, API key over SSE)", async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: f.appId, recipientId: 'customer_b' },
    });
    const created = await t.client.raw(
      'mutation { createApiKey(input: { name: "revoked at once" }) { token apiKey { id } } }',
    );
    const { token, apiKey } = (created.data as { createApiKey: { token: string; apiKey: { id: string } } })
      .createApiKey;
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      open.push(wsClient(t.url, createPortalSession.token, { onClosed: resolve })),
    );
    const before = t.dispatch.live.listenersAdded();
    const viaWs = subscribeWs<AttemptData>(open.at(-1) as Client, ATTEMPTS, { appId: f.appId });
    const viaSse = await subscribeSse<AttemptData>(t.url, token, ATTEMPTS, { appId: f.appId });
    await subscribed(before, 2);
    try {
      // Each feed rechecks its credential every 5 s by itself; "at once" must come well before the first recheck.
      const revokedAt = performance.now();
      await t.client.raw('mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }', {
        input: { appId: f.appId, recipientId: 'customer_b' },
      });
      await t.client.raw('mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { revokedAt } }', { id: apiKey.id });
      expect(await closed).toMatchObject({ code: 4401, reason: expect.stringMatching(/^UNAUTHENTICATED/) });
      await viaSse.until((feed) => feed.ended !== undefined, 5_000, 'the SSE subscription');
      const took = performance.now() - revokedAt;
      expect(viaSse.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect(viaWs.data).toEqual([]);
      expect(took).toBeLessThan(2_500);
    } finally {
      viaSse.close();
    }
  });

  it("ends an API key's open subscriptions when the key is revoked; the workspace's other keys carry on", async () => {
    const created = await t.client.raw('mutation { createApiKey(input: { name: "feed" }) { token apiKey { id } } }');
    const { token, apiKey } = (created.data as { createApiKey: { token: string; apiKey: { id: string } } })
      .createApiKey;
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      open.push(wsClient(t.url, token, { onClosed: resolve })),
    );
    const before = t.dispatch.live.listenersAdded();
    const revokedFeed = subscribeWs<AttemptData>(open.at(-1) as Client, ATTEMPTS, { appId: f.appId });
    const other = subscribeWs<AttemptData>(ws(t.apiKey), ATTEMPTS, { appId: f.appId });
    await subscribed(before, 2);
    try {
      const revoked = await t.client.raw('mutation ($id: ID!) { revokeApiKey(input: { id: $id }) { revokedAt } }', {
        id: apiKey.id,
      });
      expect(revoked.errors).toBeUndefined();
      const attempt = await insertAttempt(t.dispatch.db.prisma, f.appId, f.a);
      await worker.bus.publishAttempt(attempt);
      expect((await other.nextData(1_000)).attemptUpdated.id).toBe(attempt.attemptId);
      expect(await closed).toMatchObject({
        code: 4401,
        reason: expect.stringMatching(/^UNAUTHENTICATED: this API key was revoked/),
      });
      expect(revokedFeed.data).toEqual([]);
    } finally {
      other.unsubscribe();
    }
  });
});
