import type { Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreatePortalSessionDocument, type DispatchClient } from '../../packages/client/src/index.ts';
import { createDeliveryApp, createEndpoint } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { subscribeWs, wsClient } from '../support/live.ts';

/** The operationalEvent subscription: operators only, their own workspace's events, once committed. */

const FEED = 'subscription($types: [String!]) { operationalEvent(types: $types) { id type timestamp data } }';
const ENABLE = 'mutation { enableOperationalEvents { id } }';
const SET_DISABLED = 'mutation($id: ID!, $d: Boolean!) { updateEndpoint(input: {id: $id, disabled: $d}) { id } }';

interface Event {
  operationalEvent: { id: string; type: string; timestamp: string; data: { endpoint: { id: string } } };
}

let t: TestDispatch;
const sockets: Client[] = [];
const socket = (token: string) => {
  const client = wsClient(t.url, token);
  sockets.push(client);
  return client;
};

async function endpointOf(client: DispatchClient, recipientId = 'customer_1') {
  const appId = await createDeliveryApp(client);
  return createEndpoint(client, { appId, recipientId, url: 'http://127.0.0.1:9/hook' });
}

beforeAll(async () => {
  t = await startTestDispatch();
  await t.client.raw(ENABLE);
});

afterAll(async () => {
  for (const s of sockets) await s.dispose();
  await t?.stop();
});

describe('operationalEvent', () => {
  it("streams the workspace's events as they commit, optionally some types only", async () => {
    const all = subscribeWs<Event>(socket(t.apiKey), FEED);
    const enabledOnly = subscribeWs<Event>(socket(t.apiKey), FEED, { types: ['endpoint.enabled'] });
    await t.dispatch.live.whenListenersAdded(2);
    const endpoint = await endpointOf(t.client);
    await t.client.raw(SET_DISABLED, { id: endpoint.id, d: true });
    await t.client.raw(SET_DISABLED, { id: endpoint.id, d: false });

    const first = (await all.nextData()).operationalEvent;
    expect(first).toMatchObject({
      type: 'endpoint.disabled',
      data: { endpoint: { id: endpoint.id }, reason: 'manual' },
    });
    expect(first.id).toMatch(/^msg_/);
    expect((await all.nextData()).operationalEvent.type).toBe('endpoint.enabled');
    const only = (await enabledOnly.nextData()).operationalEvent;
    expect(only).toMatchObject({ type: 'endpoint.enabled', data: { endpoint: { id: endpoint.id } } });

    // The same event is a message of the operational app, with the same id.
    const stored = await t.client.raw<{ operationalApp: { messages: { nodes: { id: string; eventType: string }[] } } }>(
      '{ operationalApp { messages(first: 10) { nodes { id eventType } } } }',
    );
    expect(stored.data!.operationalApp.messages.nodes.map((m) => m.id)).toContain(first.id);
  });

  it("never shows another workspace's events", async () => {
    const other = await t.newWorkspace();
    await other.client.raw(ENABLE);
    const theirs = subscribeWs<Event>(socket(other.apiKey), FEED);
    await t.dispatch.live.whenListenersAdded(3);
    const mine = await endpointOf(t.client);
    await t.client.raw(SET_DISABLED, { id: mine.id, d: true });
    const their = await endpointOf(other.client);
    await other.client.raw(SET_DISABLED, { id: their.id, d: true });
    // The first event this subscriber gets is its own, though the other workspace's came first.
    expect((await theirs.nextData()).operationalEvent.data.endpoint.id).toBe(their.id);
  });

  it('refuses a portal token (FORBIDDEN), a workspace with operational events off (BAD_USER_INPUT) and unknown types', async () => {
    const appId = await createDeliveryApp(t.client);
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_1' },
    });
    const portal = subscribeWs<Event>(socket(createPortalSession.token), FEED);
    expect((await portal.next()).errors?.[0]?.extensions?.code).toBe('FORBIDDEN');

    const off = await t.newWorkspace();
    const offFeed = subscribeWs<Event>(socket(off.apiKey), FEED);
    const offResult = await offFeed.next();
    expect(offResult.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expect(offResult.errors?.[0]?.message).toContain('enableOperationalEvents');

    const unknown = subscribeWs<Event>(socket(t.apiKey), FEED, { types: ['invoice.paid'] });
    expect((await unknown.next()).errors?.[0]?.extensions?.code).toBe('UNKNOWN_EVENT_TYPE');
  });
});
