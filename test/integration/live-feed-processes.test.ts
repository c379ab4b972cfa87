import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreatePortalSessionDocument,
  createDispatchClient,
  type DispatchClient,
} from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createTestDatabase } from '../support/database.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { liveSubscribers, subscribeSse, subscribeWs, wsClient } from '../support/live.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

type AttemptData = {
  attemptUpdated: {
    id: string;
    status: string;
    responseStatusCode: number | null;
    createdAt: string;
    finishedAt: string | null;
    message: { messageId: string };
  };
};

const ATTEMPTS = `subscription($appId: ID!) {
  attemptUpdated(appId: $appId) { id status responseStatusCode createdAt finishedAt message { messageId } }
}`;

describe('live feed across separate api and worker processes', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let api: DispatchProcess;
  let worker: DispatchProcess;
  let receiver: Receiver;
  let apiKey: string;
  let client: DispatchClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, { max: 2 });
    const env = { DATABASE_URL: database.url, DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8,::1/128' };
    [api, worker] = await Promise.all([
      spawnDispatch({ ...env, DISPATCH_ROLE: 'api' }),
      spawnDispatch({ ...env, DISPATCH_ROLE: 'worker' }),
    ]);
    apiKey = (await createApiKey(db.prisma, { workspaceName: 'Live processes' })).token;
    client = createDispatchClient({ url: api.url, apiKey });
    // The first try fails, the retry a second later succeeds.
    receiver = await startReceiver([{ status: 500, body: 'try again' }], { status: 200, body: 'ok' });
  }, 90_000);

  afterAll(async () => {
    await Promise.all([api?.stop(), worker?.stop()]);
    await receiver?.close();
    await db?.close();
    await database?.drop();
  });

  it("gives a subscriber on the api process the worker's attempts, each start and end within a second", async () => {
    const appId = await createDeliveryApp(client, { retrySchedule: [1] });
    await createEndpoint(client, { appId, recipientId: 'customer_a', url: receiver.url });
    const { createPortalSession } = await client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_a' },
    });

    const socket = wsClient(api.url, apiKey);
    const operator = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
    const portal = await subscribeSse<AttemptData>(api.url, createPortalSession.token, ATTEMPTS, { appId });
    // Subscribed once the api process counts both subscriptions.
    await expect.poll(() => liveSubscribers(api.url, 'attemptUpdated'), { timeout: 5_000 }).toBe(2);

    const message = await send(client, { appId, recipientId: 'customer_a', messageId: 'order-1' });
    try {
      for (const feed of [operator, portal]) {
        await feed.until((f) => f.results.length >= 4, 15_000, 'four attempt events');
        expect(feed.results.every((r) => !r.errors)).toBe(true);
        const events = feed.data.map((d) => d.attemptUpdated);
        expect(events.map((e) => e.status)).toEqual(['SENDING', 'FAILED', 'SENDING', 'SUCCEEDED']);
        expect(events.map((e) => e.responseStatusCode)).toEqual([null, 500, null, 200]);
        expect(new Set(events.map((e) => e.message.messageId))).toEqual(new Set([message.messageId]));
        expect(events[0]!.id).toBe(events[1]!.id);
        expect(events[2]!.id).toBe(events[3]!.id);
        // Within a second of the worker recording the start, and the end (same machine, same clock).
        events.forEach((e, i) => {
          const happened = Date.parse(e.status === 'SENDING' ? e.createdAt : e.finishedAt!);
          expect(feed.receivedWallAt[i]! - happened, `${e.status} of ${e.id}`).toBeLessThan(1_000);
        });
      }
    } finally {
      await socket.dispose();
      portal.close();
    }
  });
});
