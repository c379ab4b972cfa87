import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

const SEND = `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated message { id messageId } } }`;

describe('idempotency of sendMessage', () => {
  let t: TestDispatch;
  let appId: string;
  const counts = async (uid: string) => ({
    messages: await t.dispatch.db.prisma.message.count({ where: { appId, uid } }),
    deliveries: await t.dispatch.db.prisma.delivery.count({ where: { message: { appId, uid } } }),
  });

  beforeAll(async () => {
    // API role only: deliveries stay as sendMessage left them, and nothing is sent to the example.com endpoints.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Idempotency' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'order.placed' } });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'order.shipped' } });
    for (const recipientId of ['alice', 'bob']) {
      await t.client.request(CreateEndpointDocument, {
        input: { appId, recipientId, url: `https://example.com/${recipientId}/a` },
      });
      await t.client.request(CreateEndpointDocument, {
        input: { appId, recipientId, url: `https://example.com/${recipientId}/b` },
      });
    }
  });
  afterAll(async () => t.stop());

  const send = (input: Record<string, unknown>) =>
    t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'alice', eventType: 'order.placed', data: { order: 1 }, ...input },
    });

  it('the same messageId twice returns the original message, deduplicated, and delivers nothing new', async () => {
    const first = await send({ messageId: 'order-1' });
    expect(first.sendMessage.deduplicated).toBe(false);
    expect(first.sendMessage.message.messageId).toBe('order-1');
    expect(first.sendMessage.message.deliveries.nodes).toHaveLength(2);
    expect(await counts('order-1')).toEqual({ messages: 1, deliveries: 2 });

    const again = await send({ messageId: 'order-1' });
    expect(again.sendMessage.deduplicated).toBe(true);
    expect(again.sendMessage.message.id).toBe(first.sendMessage.message.id);
    expect(again.sendMessage.message.createdAt).toBe(first.sendMessage.message.createdAt);
    expect(await counts('order-1')).toEqual({ messages: 1, deliveries: 2 });
  });

  it('a new endpoint does not get a delivery of a deduplicated resend', async () => {
    await send({ messageId: 'order-late-endpoint', recipientId: 'bob' });
    await t.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'bob', url: 'https://example.com/bob/late' },
    });
    const again = await send({ messageId: 'order-late-endpoint', recipientId: 'bob' });
    expect(again.sendMessage.deduplicated).toBe(true);
    expect(await counts('order-late-endpoint')).toEqual({ messages: 1, deliveries: 2 });
  });

  it('idempotencyKey is the same thing as messageId, either way round; both equal is fine', async () => {
    const first = await send({ idempotencyKey: 'order-2' });
    expect(first.sendMessage).toMatchObject({ deduplicated: false, message: { messageId: 'order-2' } });
    const byMessageId = await send({ messageId: 'order-2' });
    expect(byMessageId.sendMessage).toMatchObject({
      deduplicated: true,
      message: { id: first.sendMessage.message.id },
    });
    const both = await send({ messageId: 'order-2', idempotencyKey: 'order-2' });
    expect(both.sendMessage).toMatchObject({ deduplicated: true, message: { id: first.sendMessage.message.id } });

    const bothFirst = await send({ messageId: 'order-3', idempotencyKey: 'order-3' });
    expect(bothFirst.sendMessage).toMatchObject({ deduplicated: false, message: { messageId: 'order-3' } });
    expect(await counts('order-2')).toEqual({ messages: 1, deliveries: 2 });
  });

  it('both given and different is BAD_USER_INPUT and writes nothing', async () => {
    await expectError(t.client, 'BAD_USER_INPUT', SEND, {
      input: {
        appId,
        recipientId: 'alice',
        eventType: 'order.placed',
        data: {},
        messageId: 'order-4a',
        idempotencyKey: 'order-4b',
      },
    });
    expect(await counts('order-4a')).toEqual({ messages: 0, deliveries: 0 });
    expect(await counts('order-4b')).toEqual({ messages: 0, deliveries: 0 });
  });

  it.each([
    ['a different recipient', { recipientId: 'bob' }],
    ['a different event type', { eventType: 'order.shipped' }],
    ['different data', { data: { order: 2 } }],
    ['data with an extra key', { data: { order: 1, extra: null } }],
    ['data of another type', { data: [{ order: 1 }] }],
  ])('the same id with %s is IDEMPOTENCY_CONFLICT, naming the id, and writes nothing', async (_what, change) => {
    const uid = `conflict-${Object.keys(change)[0]}-${JSON.stringify(change).length}`;
    await send({ messageId: uid });
    const before = await counts(uid);
    const refused = await expectError(t.client, 'IDEMPOTENCY_CONFLICT', SEND, {
      input: { appId, recipientId: 'alice', eventType: 'order.placed', data: { order: 1 }, messageId: uid, ...change },
    });
    expect(refused.errors![0]!.extensions).toMatchObject({ messageId: uid });
    expect(await counts(uid)).toEqual(before);
  });

  it('the key order of data does not matter, at any depth', async () => {
    const first = await send({ messageId: 'order-keys', data: { a: 1, b: { x: [1, { p: 1, q: 2 }], y: 'z' } } });
    const reordered = await send({ messageId: 'order-keys', data: { b: { y: 'z', x: [1, { q: 2, p: 1 }] }, a: 1 } });
    expect(reordered.sendMessage).toMatchObject({ deduplicated: true, message: { id: first.sendMessage.message.id } });
    // Array order does matter.
    await expectError(t.client, 'IDEMPOTENCY_CONFLICT', SEND, {
      input: {
        appId,
        recipientId: 'alice',
        eventType: 'order.placed',
        messageId: 'order-keys',
        data: { a: 1, b: { x: [{ p: 1, q: 2 }, 1], y: 'z' } },
      },
    });
  });

  it('ids are per app: the same id in another app is a new message', async () => {
    const other = (await t.client.request(CreateAppDocument, { input: { name: 'Other' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId: other, name: 'order.placed' } });
    const here = await send({ messageId: 'shared-id' });
    const there = await t.client.request(SendMessageDocument, {
      input: {
        appId: other,
        recipientId: 'alice',
        eventType: 'order.placed',
        data: { order: 1 },
        messageId: 'shared-id',
      },
    });
    expect(there.sendMessage.deduplicated).toBe(false);
    expect(there.sendMessage.message.id).not.toBe(here.sendMessage.message.id);
  });

  it('a message sent without an id has its Dispatch id as messageId: resending with it deduplicates', async () => {
    const plain = await send({ data: { order: 'no-id' } });
    expect(plain.sendMessage.message.messageId).toBe(plain.sendMessage.message.id);
    const again = await send({ messageId: plain.sendMessage.message.id, data: { order: 'no-id' } });
    expect(again.sendMessage).toMatchObject({ deduplicated: true, message: { id: plain.sendMessage.message.id } });
    await expectError(t.client, 'IDEMPOTENCY_CONFLICT', SEND, {
      input: {
        appId,
        recipientId: 'alice',
        eventType: 'order.placed',
        data: { order: 'other' },
        messageId: plain.sendMessage.message.id,
      },
    });
  });

  it('20 concurrent sends of one id: exactly one message, one not deduplicated, 19 deduplicated, one set of deliveries', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, () => send({ messageId: 'race-1', data: { racing: true } })),
    );
    expect(results.filter((r) => !r.sendMessage.deduplicated)).toHaveLength(1);
    expect(results.filter((r) => r.sendMessage.deduplicated)).toHaveLength(19);
    expect(new Set(results.map((r) => r.sendMessage.message.id)).size).toBe(1);
    expect(await counts('race-1')).toEqual({ messages: 1, deliveries: 2 });
  });

  it('20 concurrent sends of one id with different data: one wins, the others conflict, nothing else is written', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        t.client.raw<{ sendMessage: { deduplicated: boolean } }>(SEND, {
          input: { appId, recipientId: 'alice', eventType: 'order.placed', data: { i }, messageId: 'race-2' },
        }),
      ),
    );
    const succeeded = results.filter((r) => !r.errors);
    expect(succeeded).toHaveLength(1);
    expect(succeeded[0]!.data?.sendMessage.deduplicated).toBe(false);
    for (const r of results.filter((r) => r.errors))
      expect(r.errors!.map((e) => e.extensions?.code)).toEqual(['IDEMPOTENCY_CONFLICT']);
    expect(await counts('race-2')).toEqual({ messages: 1, deliveries: 2 });
  });
});
