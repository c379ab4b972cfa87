import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDispatchClient,
  type DispatchClient,
  MessageCreatedDocument,
  type MessageCreatedSubscription,
} from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createTestDatabase } from '../support/database.ts';
import { createDeliveryApp } from '../support/delivery.ts';
import { liveSubscribers } from '../support/live.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';

describe("the client's subscribe() across a restart of the Dispatch it talks to", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let dispatch: DispatchProcess;
  let client: DispatchClient;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, { max: 2 });
    dispatch = await spawnDispatch({ DATABASE_URL: database.url, DISPATCH_ROLE: 'api' });
    const apiKey = (await createApiKey(db.prisma, { workspaceName: 'Reconnect' })).token;
    client = createDispatchClient({ url: dispatch.url, apiKey });
  }, 90_000);

  afterAll(async () => {
    await client?.close();
    await dispatch?.stop();
    await db?.close();
    await database?.drop();
  });

  it('reconnects and subscribes again by itself: the same iterator sees messages from before and after', async () => {
    const appId = await createDeliveryApp(client);
    const seen: string[] = [];
    let ended: unknown = 'running';
    const feed = (async () => {
      for await (const event of client.subscribe(MessageCreatedDocument, { appId })) {
        const { messageCreated }: MessageCreatedSubscription = event;
        seen.push(messageCreated.messageId);
      }
    })().then(
      () => (ended = 'ended'),
      (error: unknown) => (ended = error),
    );
    const send = (messageId: string) =>
      client.sendMessage({ appId, recipientId: 'reconnect', eventType: 'invoice.paid', data: {}, messageId });

    await expect.poll(() => liveSubscribers(dispatch.url, 'messageCreated'), { timeout: 15_000 }).toBe(1);
    await send('before-restart');
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['before-restart']);

    // The server goes away (its sockets close) and comes back on the same port.
    const port = new URL(dispatch.url).port;
    await dispatch.stop();
    dispatch = await spawnDispatch({ DATABASE_URL: database.url, DISPATCH_ROLE: 'api', PORT: port });
    expect(dispatch.url).toContain(`:${port}`);

    await expect
      .poll(() => liveSubscribers(dispatch.url, 'messageCreated'), { timeout: 90_000, interval: 200 })
      .toBe(1);
    await send('after-restart');
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['before-restart', 'after-restart']);
    expect(ended).toBe('running');
    void feed;
  }, 240_000);
});
