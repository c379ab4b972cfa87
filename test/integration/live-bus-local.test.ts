import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schema } from '../../src/graphql/schema.ts';
import { createHttpServer, type HttpServer } from '../../src/http/server.ts';
import { createLogger } from '../../src/logger.ts';
import { createDeliveryApp, createEndpoint } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type Feed, liveSubscribers, subscribeWs, wsClient } from '../support/live.ts';
import { eventually } from '../support/receiver.ts';

/**
 * The API built without a bus across processes (createHttpServer with no
 * `live`: one process, the in-process bus) still streams what PostgreSQL
 * announces itself: endpoint health changes and operational events.
 */

let t: TestDispatch;
let api: HttpServer;
let apiUrl: string;

beforeAll(async () => {
  t = await startTestDispatch();
  api = createHttpServer({
    config: t.dispatch.config,
    db: t.dispatch.db,
    schema,
    // This API queues nothing in the test: the endpoint is only disabled.
    hooks: { deliveriesCreated: async () => undefined },
    logger: createLogger('warn', 'single-process-api'),
    api: true,
  });
  apiUrl = `http://127.0.0.1:${await api.listen(0, '127.0.0.1')}`;
});
afterAll(async () => {
  await api?.close();
  await t?.stop();
});

/**
 * Subscribes on the single-process API once its bus listens: a subscription
 * made while its LISTEN connection is still being opened is refused (the
 * feed is reconnecting), so it subscribes again until the server counts it.
 */
async function subscribeListening<T>(
  ws: ReturnType<typeof wsClient>,
  field: string,
  query: string,
  variables: Record<string, unknown>,
): Promise<Feed<T>> {
  return eventually(async () => {
    const before = await liveSubscribers(apiUrl, field);
    const feed = subscribeWs<T>(ws, query, variables);
    await feed.until((f) => f.ended !== undefined || f.results.length > 0, 300).catch(() => undefined);
    if (feed.ended || feed.results.length) return undefined;
    if ((await liveSubscribers(apiUrl, field)) > before) return feed;
    feed.unsubscribe();
    return undefined;
  });
}

describe('the in-process live bus (one API process, no bus across processes)', () => {
  it('streams endpoint health changes and operational events, which PostgreSQL announces', async () => {
    const enabled = await t.client.raw<{ enableOperationalEvents: { id: string } }>(
      'mutation { enableOperationalEvents { id } }',
    );
    expect(enabled.errors).toBeUndefined();
    const appId = await createDeliveryApp(t.client);
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'customer_local',
      url: 'http://127.0.0.1:9/x',
    });
    const ws = wsClient(apiUrl, t.apiKey);
    try {
      const health = await subscribeListening<{ endpointHealthChanged: { id: string; health: { status: string } } }>(
        ws,
        'endpointHealthChanged',
        'subscription($a: ID!) { endpointHealthChanged(appId: $a) { id health { status } } }',
        { a: appId },
      );
      const operational = await subscribeListening<{
        operationalEvent: { type: string; data: { endpoint: { id: string }; reason: string } };
      }>(ws, 'operationalEvent', 'subscription { operationalEvent(types: ["endpoint.disabled"]) { type data } }', {});

      // Disabled through this API: the trigger on "Endpoint" and the operational message NOTIFY on commit.
      const response = await fetch(`${apiUrl}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${t.apiKey}` },
        body: JSON.stringify({
          query: 'mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: true}) { id disabled } }',
          variables: { id: endpoint.id },
        }),
      });
      expect(await response.json()).toEqual({ data: { updateEndpoint: { id: endpoint.id, disabled: true } } });

      expect((await health.nextData()).endpointHealthChanged).toEqual({
        id: endpoint.id,
        health: { status: 'DISABLED' },
      });
      const event = (await operational.nextData()).operationalEvent;
      expect(event.type).toBe('endpoint.disabled');
      expect(event.data).toMatchObject({ endpoint: { id: endpoint.id }, reason: 'manual' });
    } finally {
      await ws.dispose();
    }
  });
});
