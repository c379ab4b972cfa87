import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppsDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  EndpointDocument,
  MessagesDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

describe('cursor pagination', () => {
  let t: TestDispatch;
  let appId: string;
  let endpointId: string;
  /** Message ids in the order they were sent. */
  const sent: string[] = [];
  const apps: string[] = [];

  beforeAll(async () => {
    // API role: delivery statuses stay as the test sets them.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    for (let i = 0; i < 7; i++)
      apps.push((await t.client.request(CreateAppDocument, { input: { name: `App ${i}` } })).createApp.id);
    appId = apps[0]!;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'a.created' } });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'b.created' } });
    endpointId = (
      await t.client.request(CreateEndpointDocument, {
        input: { appId, recipientId: 'alice', url: 'https://example.com/a' },
      })
    ).createEndpoint.id;
    for (let i = 0; i < 25; i++) {
      const { sendMessage } = await t.client.request(SendMessageDocument, {
        input: {
          appId,
          recipientId: i % 5 === 0 ? 'bob' : 'alice',
          eventType: i % 3 === 0 ? 'b.created' : 'a.created',
          data: { i },
        },
      });
      sent.push(sendMessage.message.id);
    }
  });
  afterAll(async () => t.stop());

  async function allMessagePages(variables: Record<string, unknown>, first: number) {
    const pages: string[][] = [];
    let after: string | null | undefined;
    for (;;) {
      const { app } = await t.client.request(MessagesDocument, { appId, first, after, ...variables });
      const connection = app!.messages;
      pages.push(connection.nodes.map((n) => n.id));
      if (!connection.pageInfo.hasNextPage) break;
      after = connection.pageInfo.endCursor;
      expect(pages.length).toBeLessThan(50);
    }
    return pages;
  }

  it('messages come newest first, in pages that neither skip nor repeat', async () => {
    const pages = await allMessagePages({}, 10);
    expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
    expect(pages.flat()).toEqual([...sent].reverse());
  });

  it('the default page is 20; an empty page has hasNextPage false and a null endCursor', async () => {
    const { app } = await t.client.request(MessagesDocument, { appId });
    expect(app!.messages.nodes).toHaveLength(20);
    expect(app!.messages.pageInfo.hasNextPage).toBe(true);
    const none = await t.client.request(MessagesDocument, { appId, eventType: 'no.such' });
    expect(none.app!.messages).toEqual({ nodes: [], pageInfo: { hasNextPage: false, endCursor: null } });
  });

  it('a page stays stable while new messages arrive', async () => {
    const { app } = await t.client.request(MessagesDocument, { appId, first: 5 });
    const extra = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'carol', eventType: 'a.created', data: { late: true } },
    });
    const next = await t.client.request(MessagesDocument, { appId, first: 5, after: app!.messages.pageInfo.endCursor });
    expect(next.app!.messages.nodes.map((n) => n.id)).toEqual([...sent].reverse().slice(5, 10));
    expect(next.app!.messages.nodes.map((n) => n.id)).not.toContain(extra.sendMessage.message.id);
    sent.push(extra.sendMessage.message.id);
  });

  it('filters by event type, recipient, delivery status and time window, and pages within them', async () => {
    const bTypes = (await allMessagePages({ eventType: 'b.created' }, 3)).flat();
    expect(bTypes).toEqual(sent.filter((_, i) => i < 25 && i % 3 === 0).reverse());

    const bob = (await allMessagePages({ recipientId: 'bob' }, 2)).flat();
    expect(bob).toEqual(sent.filter((_, i) => i < 25 && i % 5 === 0).reverse());

    const failed = [sent[3]!, sent[11]!];
    await t.dispatch.db.prisma.delivery.updateMany({
      where: { messageId: { in: failed } },
      data: { status: 'FAILED' },
    });
    expect((await allMessagePages({ status: 'FAILED' }, 1)).flat()).toEqual([sent[11], sent[3]]);

    // Spread five messages over known instants.
    const base = Date.parse('2026-01-01T00:00:00.000Z');
    for (let i = 0; i < 5; i++) {
      await t.dispatch.db.prisma.message.update({
        where: { id: sent[i]! },
        data: { createdAt: new Date(base + i * 3_600_000) },
      });
    }
    const window = (
      await allMessagePages({ since: '2026-01-01T01:00:00.000Z', until: '2026-01-01T04:00:00Z' }, 2)
    ).flat();
    expect(window).toEqual([sent[3], sent[2], sent[1]]);
    const sinceOnly = (await allMessagePages({ since: '2026-01-01T04:00:00.000Z', recipientId: 'alice' }, 50)).flat();
    expect(sinceOnly).toContain(sent[4]);
    expect(sinceOnly).not.toContain(sent[3]);
    const untilOnly = (await allMessagePages({ until: '2026-01-01T02:00:00.000Z' }, 50)).flat();
    expect(untilOnly).toEqual([sent[1], sent[0]]);
  });

  it('apps page newest first', async () => {
    const seen: string[] = [];
    let after: string | null | undefined;
    for (;;) {
      const { apps: page } = await t.client.request(AppsDocument, { first: 3, after });
      seen.push(...page.nodes.map((n) => n.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual([...apps].reverse());
  });

  it('endpoints of an app and of a recipient page newest first', async () => {
    const ids = [endpointId];
    for (let i = 0; i < 4; i++) {
      ids.push(
        (
          await t.client.request(CreateEndpointDocument, {
            input: { appId, recipientId: 'dave', url: `https://example.com/d${i}` },
          })
        ).createEndpoint.id,
      );
    }
    const query = `query ($id: ID!, $after: String) { app(id: $id) { endpoints(first: 2, after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } } }`;
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      type Page = {
        app: { endpoints: { nodes: { id: string }[]; pageInfo: { hasNextPage: boolean; endCursor: string } } };
      };
      const result: { data?: Page | null } = await t.client.raw<Page>(query, { id: appId, after });
      seen.push(...result.data!.app.endpoints.nodes.map((n) => n.id));
      if (!result.data!.app.endpoints.pageInfo.hasNextPage) break;
      after = result.data!.app.endpoints.pageInfo.endCursor;
    }
    expect(seen).toEqual([...ids].reverse());

    const recipient = await t.client.raw<{
      recipient: { endpoints: { edges: { cursor: string; node: { id: string } }[] } };
    }>(
      `query ($id: ID!) { recipient(appId: $id, recipientId: "dave") { endpoints(first: 10) { edges { cursor node { id } } } } }`,
      { id: appId },
    );
    const edges = recipient.data!.recipient.endpoints.edges;
    expect(edges.map((e) => e.node.id)).toEqual(ids.slice(1).reverse());
    for (const edge of edges) expect(typeof edge.cursor).toBe('string');
  });

  it("an endpoint's deliveries page newest first", async () => {
    const seen: string[] = [];
    let after: string | null | undefined;
    for (;;) {
      const { endpoint } = await t.client.request(EndpointDocument, { id: endpointId, first: 7, after });
      seen.push(...endpoint!.deliveries.nodes.map((d) => d.id));
      if (!endpoint!.deliveries.pageInfo.hasNextPage) break;
      after = endpoint!.deliveries.pageInfo.endCursor;
    }
    const expected = await t.dispatch.db.prisma.delivery.findMany({
      where: { endpointId },
      orderBy: { id: 'desc' },
      select: { id: true },
    });
    expect(seen).toEqual(expected.map((d) => d.id));
    // Every message to alice (the endpoint's recipient) made one delivery.
    expect(seen).toHaveLength(sent.filter((_, i) => i < 25 && i % 5 !== 0).length);
  });

  it('first over 100 is BAD_USER_INPUT, on root and nested connections; 100 is fine', async () => {
    await expectError(t.client, 'BAD_USER_INPUT', `{ apps(first: 101) { nodes { id } } }`);
    await expectError(
      t.client,
      'BAD_USER_INPUT',
      `query ($id: ID!) { endpoint(id: $id) { deliveries(first: 500) { nodes { id } } } }`,
      { id: endpointId },
    );
    const { app } = await t.client.request(MessagesDocument, { appId, first: 100 });
    expect(app!.messages.nodes.length).toBe(sent.length);
  });
});
