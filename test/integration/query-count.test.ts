import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  MessagesDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

/**
 * Selection-aware loading: a page costs a fixed number of SQL statements
 * whatever its length. Counted on the pool Prisma runs its statements on.
 */
describe('SQL statements per page', () => {
  let t: TestDispatch;
  const apps: Record<'few' | 'many', string> = { few: '', many: '' };
  const statements: string[] = [];
  let counting = false;

  beforeAll(async () => {
    // API role: no worker shares the pool, so every statement counted is the request's.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    const pool = t.dispatch.db.pool;
    const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
    (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      if (counting) {
        const first = args[0];
        const text = typeof first === 'string' ? first : String((first as { text?: string }).text);
        // Authentication is cached for a second, so a slow run may look the key up again: not part of the page.
        if (!/"ApiKey"/.test(text)) statements.push(text);
      }
      return query(...args);
    };

    for (const [size, count] of [
      ['few', 5],
      ['many', 50],
    ] as const) {
      const appId = (await t.client.request(CreateAppDocument, { input: { name: `${count} messages` } })).createApp.id;
      apps[size] = appId;
      await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'page.test' } });
      for (let e = 0; e < 3; e++) {
        // Two recipients, so rows of one page belong to different parents.
        for (const recipientId of ['r1', 'r2']) {
          await t.client.request(CreateEndpointDocument, {
            input: { appId, recipientId, url: `https://example.com/${recipientId}/${e}` },
          });
        }
      }
      await Promise.all(
        Array.from({ length: count }, (_, i) =>
          t.client.request(SendMessageDocument, {
            input: { appId, recipientId: i % 2 ? 'r1' : 'r2', eventType: 'page.test', data: { i } },
          }),
        ),
      );
    }
  });
  afterAll(async () => t.stop());

  async function count<T>(run: () => Promise<T>): Promise<{ result: T; statements: string[] }> {
    await run(); // warm caches (the API key lookup is cached for a second)
    statements.length = 0;
    counting = true;
    try {
      const result = await run();
      return { result, statements: [...statements] };
    } finally {
      counting = false;
    }
  }

  it('a page of messages with their deliveries and endpoints: the same few statements for 5 as for 50', async () => {
    const few = await count(() => t.client.request(MessagesDocument, { appId: apps.few, first: 50 }));
    const many = await count(() => t.client.request(MessagesDocument, { appId: apps.many, first: 50 }));
    expect(few.result.app?.messages.nodes).toHaveLength(5);
    expect(many.result.app?.messages.nodes).toHaveLength(50);
    for (const node of many.result.app!.messages.nodes) {
      expect(node.deliveries.nodes).toHaveLength(3);
      for (const d of node.deliveries.nodes) expect(d.endpoint.url).toMatch(/^https:\/\/example\.com\/r[12]\/\d$/);
    }
    console.info(`messages page: ${few.statements.length} statements for 5 messages, ${many.statements.length} for 50`);
    expect(many.statements.length, many.statements.join('\n')).toBe(few.statements.length);
    expect(many.statements.length).toBeLessThanOrEqual(5);
  });

  const deep = `query ($appId: ID!) {
    app(id: $appId) {
      name
      eventTypes { name }
      endpoints(first: 10) { nodes { id url secret recipientId deliveries(first: 50) { nodes { id status message { id messageId eventType recipientId } } } } }
      recipients(first: 10) { nodes { recipientId endpoints { nodes { id } } messages(first: 50) { nodes { id attempts(first: 5) { nodes { id } } } } } }
    }
  }`;

  it('endpoints with their deliveries and messages, recipients with their messages: still a fixed number', async () => {
    const few = await count(() => t.client.raw(deep, { appId: apps.few }));
    const many = await count(() => t.client.raw(deep, { appId: apps.many }));
    expect(few.result.errors).toBeUndefined();
    expect(many.result.errors).toBeUndefined();
    console.info(`nested page: ${few.statements.length} statements for 5 messages, ${many.statements.length} for 50`);
    expect(many.statements.length, many.statements.join('\n')).toBe(few.statements.length);
    expect(many.statements.length).toBeLessThanOrEqual(12);
  });

  it('the counter sees the statements (so the checks above can fail)', async () => {
    const one = await count(() => t.client.raw(`query ($id: ID!) { app(id: $id) { name } }`, { id: apps.few }));
    expect(one.statements.length).toBeGreaterThanOrEqual(1);
    expect(one.statements.join('\n')).toMatch(/"App"/);
  });
});
