import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreatePortalSessionDocument } from '../../packages/client/src/index.ts';
import { createDeliveryApp, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type Feed, subscribeSse, subscribeWs, wsClient } from '../support/live.ts';

type MessageData = { messageCreated: { id: string } };
const MESSAGES = 'subscription($appId: ID!) { messageCreated(appId: $appId) { id } }';

/**
 * Issue 12, item 3: one portal WebSocket once opened 20,000 subscriptions
 * (heap 1.1 GB). A socket has at most DISPATCH_MAX_SUBSCRIPTIONS_PER_SOCKET
 * (default 100) and a credential at most DISPATCH_MAX_SUBSCRIPTIONS_PER_CREDENTIAL
 * per API process (120 here, default 1,000); beyond them a subscribe is
 * RATE_LIMITED while the socket and its other subscriptions carry on.
 */
describe('subscription limits', () => {
  let t: TestDispatch;
  let appId: string;
  const clients: Client[] = [];
  const closes: { code: number; reason: string }[] = [];

  const socket = (token: string) => {
    const client = wsClient(t.url, token, { onClosed: (event) => closes.push(event) });
    clients.push(client);
    return client;
  };
  const codes = (feed: Feed<unknown>) => feed.results.flatMap((r) => r.errors ?? []).map((e) => e.extensions?.code);

  beforeAll(async () => {
    // The per-socket limit at its default.
    t = await startTestDispatch({ DISPATCH_MAX_SUBSCRIPTIONS_PER_CREDENTIAL: '120' });
    appId = await createDeliveryApp(t.client);
  });
  afterAll(async () => {
    for (const client of clients) await client.dispose();
    await t?.stop();
  });

  it('refuses the 101st subscription of a socket with RATE_LIMITED; the socket and its 100 others keep working', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_a' },
    });
    const client = socket(createPortalSession.token);
    const before = t.dispatch.live.listenersAdded();
    const feeds = Array.from({ length: 100 }, () => subscribeWs<MessageData>(client, MESSAGES, { appId }));
    await t.dispatch.live.whenListenersAdded(before + 100);

    const refused = subscribeWs<MessageData>(client, MESSAGES, { appId });
    await refused.until((feed) => feed.ended !== undefined, 5_000, 'the 101st subscription');
    expect(codes(refused)).toEqual(['RATE_LIMITED']);
    expect(refused.results[0]?.errors?.[0]?.message).toMatch(/already has 100 operations open/);

    // The 100 receive the next message; the socket was not closed.
    const message = await send(t.client, { appId, recipientId: 'customer_a' });
    await Promise.all(feeds.map((feed) => feed.until((f) => f.data.length === 1, 10_000)));
    expect(new Set(feeds.map((feed) => feed.data[0]?.messageCreated.id))).toEqual(new Set([message.id]));
    expect(closes).toEqual([]);

    // A place given back is taken again on the same socket.
    feeds[0]!.unsubscribe();
    const again = subscribeWs<MessageData>(client, MESSAGES, { appId });
    await t.dispatch.live.whenListenersAdded(before + 101);
    const next = await send(t.client, { appId, recipientId: 'customer_a' });
    expect((await again.nextData(10_000)).messageCreated.id).toBe(next.id);
    for (const feed of [...feeds, again]) feed.unsubscribe();
  });

  it('refuses a credential its 121st subscription on this API process, over WebSocket and SSE alike; another credential is not affected', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_b' },
    });
    const token = createPortalSession.token;
    const [first, second] = [socket(token), socket(token)];
    const before = t.dispatch.live.listenersAdded();
    const feeds = [
      ...Array.from({ length: 100 }, () => subscribeWs<MessageData>(first, MESSAGES, { appId })),
      ...Array.from({ length: 20 }, () => subscribeWs<MessageData>(second, MESSAGES, { appId })),
    ];
    await t.dispatch.live.whenListenersAdded(before + 120);

    const overWs = subscribeWs<MessageData>(second, MESSAGES, { appId });
    await overWs.until((feed) => feed.ended !== undefined, 5_000, 'the 121st subscription over WebSocket');
    expect(codes(overWs)).toEqual(['RATE_LIMITED']);
    expect(overWs.results[0]?.errors?.[0]?.message).toMatch(/already has 120 live-feed subscriptions open/);
    const overSse = await subscribeSse<MessageData>(t.url, token, MESSAGES, { appId });
    await overSse.until((feed) => feed.ended !== undefined, 5_000, 'the 121st subscription over SSE');
    expect(codes(overSse)).toEqual(['RATE_LIMITED']);

    // The operator's key has places of its own.
    const operator = subscribeWs<MessageData>(socket(t.apiKey), MESSAGES, { appId });
    await t.dispatch.live.whenListenersAdded(before + 121);
    const message = await send(t.client, { appId, recipientId: 'customer_b' });
    expect((await operator.nextData(10_000)).messageCreated.id).toBe(message.id);
    await Promise.all(feeds.map((feed) => feed.until((f) => f.data.length === 1, 10_000)));
    expect(closes).toEqual([]);
    for (const feed of [...feeds, operator]) feed.unsubscribe();
  });
});
