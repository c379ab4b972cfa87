import { type Client, createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArchiveEventTypeDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
  type DispatchClient,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { type IdType, newId } from '../../src/domain/ids.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { codesOf } from '../support/graphql.ts';

/** Everything one recipient owns, as ids the portal could try. */
interface Owned {
  label: string;
  workspaceId: string;
  apiKeyId: string;
  appId: string;
  recipientUid: string;
  recipientNodeId: string;
  eventTypeId: string;
  endpointId: string;
  messageId: string;
  messageUid: string;
  deliveryId: string;
  attemptId: string;
}

const NODE_TYPES = [
  'Workspace',
  'ApiKey',
  'App',
  'EventType',
  'Recipient',
  'Endpoint',
  'Message',
  'Delivery',
  'Attempt',
] as const;
const nodeIdOf = (o: Owned, type: (typeof NODE_TYPES)[number]) =>
  ({
    Workspace: o.workspaceId,
    ApiKey: o.apiKeyId,
    App: o.appId,
    EventType: o.eventTypeId,
    Recipient: o.recipientNodeId,
    Endpoint: o.endpointId,
    Message: o.messageId,
    Delivery: o.deliveryId,
    Attempt: o.attemptId,
  })[type];

type WsOutcome = {
  data?: unknown;
  errors?: { message: string; extensions?: { code?: string } }[];
  closed?: { code: number; reason: string };
};

/** A graphql-ws client over Node's WebSocket with `token` in connectionParams. */
function wsClient(url: string, token: string): Client {
  return createClient({
    url: `${url.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: true,
  });
}

/** Subscribes and resolves the first thing that comes back: an event, errors, or the socket closing. */
function firstOutcome(client: Client, query: string, variables: Record<string, unknown>): Promise<WsOutcome> {
  return new Promise((resolve) => {
    const stop = client.subscribe(
      { query, variables },
      {
        next: (value) => {
          stop();
          resolve(value as WsOutcome);
        },
        error: (error) => {
          if (Array.isArray(error)) resolve({ errors: error });
          else if (error && typeof error === 'object' && 'code' in error)
            resolve({ closed: { code: (error as CloseEvent).code, reason: (error as CloseEvent).reason } });
          else resolve({ errors: [{ message: String(error) }] });
        },
        complete: () => undefined,
      },
    );
  });
}

/** Every "id" anywhere in a response. */
function idsIn(value: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(value)) for (const v of value) idsIn(v, out);
  else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === 'id' && typeof v === 'string') out.add(v);
      else idsIn(v, out);
    }
  }
  return out;
}

describe('a portal token sees only its own recipient, through every path', () => {
  let t: TestDispatch;
  let portal: DispatchClient;
  let portalToken: string;
  let own: Owned;
  let foreign: Owned[];
  let archivedEventTypeId: string;

  let seeded = 0;

  /** An endpoint, a message (so a PENDING delivery) and an attempt of one recipient. */
  async function seed(
    client: DispatchClient,
    workspaceId: string,
    appId: string,
    recipientUid: string,
    label: string,
  ): Promise<Owned> {
    const { createEndpoint } = await client.request(CreateEndpointDocument, {
      input: {
        appId,
        recipientId: recipientUid,
        url: 'http://127.0.0.1:9/hook',
        description: `${label} endpoint`,
        headers: { 'x-tenant': recipientUid },
      },
    });
    const { sendMessage } = await client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: recipientUid,
        eventType: 'invoice.paid',
        data: { label },
        messageId: `order-${seeded++}`,
      },
    });
    const prisma = t.dispatch.db.prisma;
    const delivery = await prisma.delivery.findFirstOrThrow({ where: { messageId: sendMessage.message.id } });
    // The delivery engine is not what this test is about: an attempt row stands for one it would record.
    const attempt = await prisma.attempt.create({
      data: {
        id: newId('Attempt'),
        appId,
        recipientId: delivery.recipientId,
        messageId: delivery.messageId,
        endpointId: delivery.endpointId,
        deliveryId: delivery.id,
        status: 'FAILED',
        url: createEndpoint.url,
        responseStatusCode: 500,
        responseBody: `secret body of ${label}`,
        durationMs: 12,
        error: 'HTTP 500',
        errorKind: 'http_status',
        finishedAt: new Date(),
      },
    });
    const eventType = await prisma.eventType.findFirstOrThrow({ where: { appId, name: 'invoice.paid' } });
    const apiKey = await prisma.apiKey.findFirstOrThrow({ where: { workspaceId } });
    return {
      label,
      workspaceId,
      apiKeyId: apiKey.id,
      appId,
      recipientUid,
      recipientNodeId: delivery.recipientId,
      eventTypeId: eventType.id,
      endpointId: createEndpoint.id,
      messageId: sendMessage.message.id,
      messageUid: sendMessage.message.messageId,
      deliveryId: delivery.id,
      attemptId: attempt.id,
    };
  }

  async function newApp(client: DispatchClient, name: string): Promise<string> {
    const { createApp } = await client.request(CreateAppDocument, { input: { name } });
    await client.request(CreateEventTypeDocument, {
      input: { appId: createApp.id, name: 'invoice.paid', description: 'An invoice was paid.' },
    });
    return createApp.id;
  }

  beforeAll(async () => {
    t = await startTestDispatch();
    const operator = t.client;
    const workspaceId = (await t.dispatch.db.prisma.workspace.findFirstOrThrow()).id;
    const app1 = await newApp(operator, 'Billing');
    const app2 = await newApp(operator, 'Shipping');
    await operator.request(CreateEventTypeDocument, {
      input: { appId: app1, name: 'invoice.voided', description: 'Retired.' },
    });
    archivedEventTypeId = (
      await operator.request(ArchiveEventTypeDocument, { input: { appId: app1, name: 'invoice.voided' } })
    ).archiveEventType.id;
    const other = await t.newWorkspace('Other workspace');
    const app3 = await newApp(other.client, 'Billing');

    own = await seed(operator, workspaceId, app1, 'customer_1', 'own');
    foreign = [
      await seed(operator, workspaceId, app1, 'customer_2', 'another recipient of the same app'),
      await seed(operator, workspaceId, app2, 'customer_1', 'the same recipient id in another app'),
      await seed(other.client, other.workspaceId, app3, 'customer_1', 'the same recipient id in another workspace'),
    ];
    const { createPortalSession } = await operator.request(CreatePortalSessionDocument, {
      input: { appId: app1, recipientId: 'customer_1' },
    });
    portalToken = createPortalSession.token;
    portal = t.clientFor(portalToken);
  });
  afterAll(async () => t?.stop());

  /** Runs a query against a foreign id and against a missing one of the same type; both must answer the same. */
  async function sameAsMissing(
    query: string,
    foreignVars: Record<string, unknown>,
    missingVars: Record<string, unknown>,
  ) {
    const [a, b] = [await portal.raw(query, foreignVars), await portal.raw(query, missingVars)];
    expect(a, JSON.stringify(foreignVars)).toEqual(b);
    return a;
  }

  it('sees its own objects through the root fields (so the denials below are not vacuous)', async () => {
    const result = await portal.raw<Record<string, { id: string } | null>>(
      `query ($app: ID!, $rcp: String!, $ep: ID!, $msg: ID!) {
        viewer { kind workspace { id } app { id name } recipient { id recipientId } }
        app(id: $app) { id } recipient(appId: $app, recipientId: $rcp) { id } endpoint(id: $ep) { id secret }
        message(appId: $app, id: $msg) { id }
      }`,
      { app: own.appId, rcp: own.recipientUid, ep: own.endpointId, msg: own.messageUid },
    );
    expect(result.errors).toBeUndefined();
    expect(result.data).toMatchObject({
      viewer: {
        kind: 'PORTAL',
        workspace: null,
        app: { id: own.appId, name: 'Billing' },
        recipient: { id: own.recipientNodeId, recipientId: 'customer_1' },
      },
      app: { id: own.appId },
      recipient: { id: own.recipientNodeId },
      endpoint: { id: own.endpointId, secret: expect.stringMatching(/^whsec_/) },
      message: { id: own.messageId },
    });
    for (const type of NODE_TYPES.filter((n) => n !== 'Workspace' && n !== 'ApiKey')) {
      const node = await portal.raw<{ node: { id: string } | null }>(`query ($id: ID!) { node(id: $id) { id } }`, {
        id: nodeIdOf(own, type),
      });
      expect(node.data?.node, type).toEqual({ id: nodeIdOf(own, type) });
    }
  });

  for (const [index, label] of [
    'another recipient of the same app',
    'the same recipient id in another app',
    'the same recipient id in another workspace',
  ].entries()) {
    describe(`data of ${label}`, () => {
      const f = () => foreign[index]!;

      it('root fields answer null, exactly as for a missing object', async () => {
        if (index > 0) {
          const app = await sameAsMissing(
            `query ($id: ID!) { app(id: $id) { id name } }`,
            { id: f().appId },
            { id: newId('App') },
          );
          expect(app.data).toEqual({ app: null });
        }
        const recipient = await sameAsMissing(
          `query ($app: ID!, $rcp: String!) { recipient(appId: $app, recipientId: $rcp) { id } }`,
          { app: f().appId, rcp: f().recipientUid },
          { app: f().appId, rcp: 'nobody_at_all' },
        );
        expect(recipient.data).toEqual({ recipient: null });
        const endpoint = await sameAsMissing(
          `query ($id: ID!) { endpoint(id: $id) { id secret } }`,
          { id: f().endpointId },
          { id: newId('Endpoint') },
        );
        expect(endpoint.data).toEqual({ endpoint: null });
        for (const id of [f().messageId, f().messageUid]) {
          const message = await sameAsMissing(
            `query ($app: ID!, $id: ID!) { message(appId: $app, id: $id) { id data } }`,
            { app: f().appId, id },
            { app: f().appId, id: id.startsWith('msg_') ? newId('Message') : 'order-nobody' },
          );
          expect(message.data).toEqual({ message: null });
        }
      });

      it('node(id:) and nodes(ids:) answer null for every node type', async () => {
        // Another recipient of the same app shares its app and event types, which the portal may see.
        const types = index === 0 ? NODE_TYPES.filter((n) => n !== 'App' && n !== 'EventType') : NODE_TYPES;
        for (const type of types) {
          const result = await sameAsMissing(
            `query ($id: ID!) { node(id: $id) { id } }`,
            { id: nodeIdOf(f(), type) },
            { id: newId(type as IdType) },
          );
          expect(result.errors, type).toBeUndefined();
          expect(result.data, type).toEqual({ node: null });
        }
        const ids = types.map((type) => nodeIdOf(f(), type));
        const result = await portal.raw(`query ($ids: [ID!]!) { nodes(ids: $ids) { id } }`, { ids });
        expect(result.errors).toBeUndefined();
        expect(result.data).toEqual({ nodes: ids.map(() => null) });
      });

      it('endpoint mutations on its endpoint answer NOT_FOUND, exactly as for a missing one, and change nothing', async () => {
        const cases: [string, Record<string, unknown>][] = [
          [
            'mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { id } }',
            { url: 'http://127.0.0.1:9/stolen', disabled: true },
          ],
          ['mutation ($input: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $input) { id secret } }', {}],
          ['mutation ($input: DeleteEndpointInput!) { deleteEndpoint(input: $input) { id url } }', {}],
        ];
        for (const [query, extra] of cases) {
          const result = await sameAsMissing(
            query,
            { input: { id: f().endpointId, ...extra } },
            { input: { id: newId('Endpoint'), ...extra } },
          );
          expect(codesOf(result), query).toEqual(['NOT_FOUND']);
          expect(result.data).toBeNull();
        }
        const row = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({
          where: { id: f().endpointId },
          include: { secrets: true },
        });
        expect(row).toMatchObject({ url: 'http://127.0.0.1:9/hook', disabled: false });
        expect(row.secrets).toHaveLength(1);
      });

      it('resending its message and recovering its endpoint answer NOT_FOUND, exactly as for missing ones, and queue nothing', async () => {
        const prisma = t.dispatch.db.prisma;
        const attemptsBefore = await prisma.attempt.count({
          where: { recipientId: f().recipientNodeId, trigger: 'MANUAL' },
        });
        const resend = 'mutation ($input: ResendMessageInput!) { resendMessage(input: $input) { id } }';
        for (const appId of [f().appId, own.appId]) {
          for (const messageId of [f().messageId, f().messageUid]) {
            const result = await sameAsMissing(
              resend,
              { input: { appId, messageId } },
              { input: { appId, messageId: messageId.startsWith('msg_') ? newId('Message') : 'order-nobody' } },
            );
            expect(codesOf(result), `${appId} ${messageId}`).toEqual(['NOT_FOUND']);
          }
        }
        const toForeignEndpoint = await sameAsMissing(
          resend,
          { input: { appId: own.appId, messageId: own.messageId, endpointId: f().endpointId } },
          { input: { appId: own.appId, messageId: own.messageId, endpointId: newId('Endpoint') } },
        );
        expect(codesOf(toForeignEndpoint)).toEqual(['NOT_FOUND']);
        const recover = await sameAsMissing(
          'mutation ($input: RecoverEndpointInput!) { recoverEndpoint(input: $input) { queued } }',
          { input: { endpointId: f().endpointId, since: '2000-01-01T00:00:00Z' } },
          { input: { endpointId: newId('Endpoint'), since: '2000-01-01T00:00:00Z' } },
        );
        expect(codesOf(recover)).toEqual(['NOT_FOUND']);
        expect(await prisma.attempt.count({ where: { recipientId: f().recipientNodeId, trigger: 'MANUAL' } })).toBe(
          attemptsBefore,
        );
      });

      it('creating an endpoint for that recipient answers NOT_FOUND, exactly as for a missing recipient or app', async () => {
        const query = 'mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }';
        const input = { appId: f().appId, recipientId: f().recipientUid, url: 'http://127.0.0.1:9/planted' };
        const missing = index === 0 ? { ...input, recipientId: 'nobody_at_all' } : { ...input, appId: newId('App') };
        const result = await sameAsMissing(query, { input }, { input: missing });
        expect(codesOf(result)).toEqual(['NOT_FOUND']);
        expect(await t.dispatch.db.prisma.endpoint.count({ where: { url: 'http://127.0.0.1:9/planted' } })).toBe(0);
      });
    });
  }

  it("nested paths from its own app show only its own recipient's data", async () => {
    // Several small queries rather than one deep one, to stay under the cost limit.
    const queries = [
      `query { apps(first: 10) { nodes { id } } viewer { app { id eventTypes(includeArchived: true) { id name } recipients(first: 10) { nodes { id app { id } } } } } }`,
      `query { viewer { app { endpoints(first: 10) { nodes { id recipient { id } app { id } } } } } }`,
      `query { viewer { app { messages(first: 10) { nodes { id app { id } recipient { id } attempts(first: 10) { nodes { id } } } } } } }`,
      `query { viewer { app { messages(first: 5) { nodes { deliveries(first: 5) { nodes { id endpoint { id } message { id } } } } } } } }`,
      `query { viewer { app { messages(first: 5) { nodes { deliveries(first: 5) { nodes { attempts(first: 5) { nodes { id delivery { id } endpoint { id } message { id } } } } } } } } } }`,
      `query { viewer { recipient { id app { id } messages(first: 10) { nodes { id } } endpoints(first: 10) { nodes { id deliveries(first: 10) { nodes { id } } attempts(first: 10) { nodes { id } } } } } } }`,
    ];
    const seen = new Set<string>();
    for (const query of queries) {
      const result = await portal.raw(query);
      expect(result.errors, query).toBeUndefined();
      idsIn(result.data, seen);
    }
    // Everything the recipient owns, read after the queries (the delivery engine may add attempts meanwhile).
    const prisma = t.dispatch.db.prisma;
    const mine = { recipientId: own.recipientNodeId };
    const ownAll = new Set([
      own.appId,
      own.eventTypeId,
      own.recipientNodeId,
      ...(await prisma.endpoint.findMany({ where: mine })).map((r) => r.id),
      ...(await prisma.message.findMany({ where: mine })).map((r) => r.id),
      ...(await prisma.delivery.findMany({ where: mine })).map((r) => r.id),
      ...(await prisma.attempt.findMany({ where: mine })).map((r) => r.id),
    ]);
    expect([...seen].filter((id) => !ownAll.has(id))).toEqual([]);
    for (const id of [
      own.appId,
      own.eventTypeId,
      own.recipientNodeId,
      own.endpointId,
      own.messageId,
      own.deliveryId,
      own.attemptId,
    ]) {
      expect(seen.has(id), id).toBe(true);
    }

    const byName = await portal.raw(
      `query ($app: ID!) {
        app(id: $app) {
          byOther: messages(first: 10, recipientId: "customer_2") { nodes { id } }
          recipient(recipientId: "customer_2") { id }
          eventType(name: "invoice.voided") { id }
          paid: eventType(name: "invoice.paid") { id }
        }
      }`,
      { app: own.appId },
    );
    expect(byName).toMatchObject({
      data: { app: { byOther: { nodes: [] }, recipient: null, eventType: null, paid: { id: own.eventTypeId } } },
    });
  });

  it('archived event types are hidden: in the catalog, by name, by node(id:), and as an endpoint filter', async () => {
    const node = await portal.raw(`query ($id: ID!) { node(id: $id) { id } }`, { id: archivedEventTypeId });
    expect(node).toMatchObject({ data: { node: null } });
    const operatorView = await t.client.raw(`query ($id: ID!) { node(id: $id) { id } }`, { id: archivedEventTypeId });
    expect(operatorView).toMatchObject({ data: { node: { id: archivedEventTypeId } } });
    const created = await portal.raw(
      'mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }',
      {
        input: {
          appId: own.appId,
          recipientId: own.recipientUid,
          url: 'http://127.0.0.1:9/x',
          eventTypes: ['invoice.voided'],
        },
      },
    );
    expect(codesOf(created)).toEqual(['UNKNOWN_EVENT_TYPE']);
  });

  it('operator-only operations are FORBIDDEN, even on its own app and recipient', async () => {
    const app = own.appId;
    const cases: [string, Record<string, unknown>][] = [
      [
        'mutation ($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated } }',
        { input: { appId: app, recipientId: own.recipientUid, eventType: 'invoice.paid', data: {} } },
      ],
      ['mutation ($input: CreateAppInput!) { createApp(input: $input) { id } }', { input: { name: 'Mine now' } }],
      [
        'mutation ($input: UpdateAppInput!) { updateApp(input: $input) { id } }',
        { input: { id: app, name: 'Renamed' } },
      ],
      [
        'mutation ($input: CreateEventTypeInput!) { createEventType(input: $input) { id } }',
        { input: { appId: app, name: 'custom.event' } },
      ],
      [
        'mutation ($input: ArchiveEventTypeInput!) { archiveEventType(input: $input) { id } }',
        { input: { appId: app, name: 'invoice.paid' } },
      ],
      [
        'mutation ($input: CreatePortalSessionInput!) { createPortalSession(input: $input) { token } }',
        { input: { appId: app, recipientId: own.recipientUid } },
      ],
      [
        'mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }',
        { input: { appId: app, recipientId: 'customer_2' } },
      ],
      ['mutation { createApiKey { token } }', {}],
      ['mutation ($input: RevokeApiKeyInput!) { revokeApiKey(input: $input) { id } }', { input: { id: own.apiKeyId } }],
      ['query { app: viewer { app { retrySchedule } } }', {}],
      ['query { app: viewer { app { attemptTimeoutMs } } }', {}],
    ];
    for (const [query, variables] of cases) {
      const result = await portal.raw(query, variables);
      expect(codesOf(result), query).toEqual(['FORBIDDEN']);
    }
    const prisma = t.dispatch.db.prisma;
    expect(await prisma.app.findUniqueOrThrow({ where: { id: app } })).toMatchObject({ name: 'Billing' });
    expect(await prisma.message.count({ where: { appId: app } })).toBe(2);
    expect(await prisma.eventType.count({ where: { appId: app, archivedAt: null } })).toBe(1);
    expect(await prisma.apiKey.count({ where: { revokedAt: null } })).toBe(2);
  });

  it('manages its own endpoints: create, edit, disable, rotate, delete', async () => {
    const { createEndpoint } = await portal.request(CreateEndpointDocument, {
      input: {
        appId: own.appId,
        recipientId: own.recipientUid,
        url: 'http://127.0.0.1:9/mine',
        eventTypes: ['invoice.paid'],
      },
    });
    const updated = await portal.raw(
      'mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { disabled description } }',
      {
        input: { id: createEndpoint.id, disabled: true, description: 'paused' },
      },
    );
    expect(updated.data).toEqual({ updateEndpoint: { disabled: true, description: 'paused' } });
    const rotated = await portal.raw(
      'mutation ($input: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $input) { secret } }',
      {
        input: { id: createEndpoint.id },
      },
    );
    const newSecret = (rotated.data as { rotateEndpointSecret: { secret: string } }).rotateEndpointSecret.secret;
    expect(newSecret).toMatch(/^whsec_/);
    expect(newSecret).not.toBe(createEndpoint.secret);
    const deleted = await portal.raw(
      'mutation ($input: DeleteEndpointInput!) { deleteEndpoint(input: $input) { id } }',
      { input: { id: createEndpoint.id } },
    );
    expect(deleted.data).toEqual({ deleteEndpoint: { id: createEndpoint.id } });
  });

  describe('the live feed (attemptUpdated over graphql-ws)', () => {
    const SUBSCRIPTION = `subscription ($app: ID!, $rcp: String, $msg: ID, $ep: ID) {
      attemptUpdated(appId: $app, recipientId: $rcp, messageId: $msg, endpointId: $ep) { id status responseBody message { id } }
    }`;
    let ws: Client;
    beforeAll(() => {
      ws = wsClient(t.url, portalToken);
    });
    afterAll(async () => ws?.dispose());

    it("carries only its own recipient's attempts, whatever is written or published on the bus", async () => {
      const received: string[] = [];
      let resolveOwn!: () => void;
      const ownArrived = new Promise<void>((resolve) => (resolveOwn = resolve));
      const before = t.dispatch.live.listenersAdded();
      const stop = ws.subscribe<{ attemptUpdated: { id: string } }>(
        { query: SUBSCRIPTION, variables: { app: own.appId } },
        {
          next: (value) => {
            expect(value.errors).toBeUndefined();
            received.push(value.data!.attemptUpdated.id);
            if (value.data!.attemptUpdated.id === own.attemptId) resolveOwn();
          },
          error: (error) => {
            throw error;
          },
          complete: () => undefined,
        },
      );
      await t.dispatch.live.whenListenersAdded(before + 1);
      const prisma = t.dispatch.db.prisma;
      const eventOf = async (attemptId: string) => {
        const a = await prisma.attempt.findUniqueOrThrow({ where: { id: attemptId } });
        return {
          attemptId: a.id,
          appId: a.appId,
          recipientId: a.recipientId,
          messageId: a.messageId,
          endpointId: a.endpointId,
          status: 'FAILED' as const,
        };
      };
      // Each attempt's status changes (the event log records it, with the row's own app and recipient) and is announced.
      const change = async (attemptId: string) => {
        await t.dispatch.db.pool.query(
          `UPDATE "Attempt" SET status = CASE WHEN status = 'FAILED' THEN 'SUCCEEDED'::"AttemptStatus" ELSE 'FAILED'::"AttemptStatus" END WHERE id = $1`,
          [attemptId],
        );
        await t.dispatch.live.publishAttempt(await eventOf(attemptId));
      };
      for (const f of foreign) await change(f.attemptId);
      // A notification that names its own app and recipient but another's attempt: only a wake-up, the log decides.
      await t.dispatch.live.publishAttempt({
        ...(await eventOf(foreign[0]!.attemptId)),
        appId: own.appId,
        recipientId: own.recipientNodeId,
      });
      await change(own.attemptId);
      await ownArrived;
      stop();
      expect(received).toEqual([own.attemptId]);
    });

    it('subscribing to data of another app, recipient or endpoint answers NOT_FOUND, exactly as for a missing one', async () => {
      const cases: [Record<string, unknown>, Record<string, unknown>][] = [
        [{ app: foreign[1]!.appId }, { app: newId('App') }],
        [{ app: foreign[2]!.appId }, { app: newId('App') }],
        [
          { app: own.appId, rcp: 'customer_2' },
          { app: own.appId, rcp: 'nobody_at_all' },
        ],
        [
          { app: own.appId, ep: foreign[0]!.endpointId },
          { app: own.appId, ep: newId('Endpoint') },
        ],
      ];
      for (const [foreignVars, missingVars] of cases) {
        const [a, b] = [
          await firstOutcome(ws, SUBSCRIPTION, foreignVars),
          await firstOutcome(ws, SUBSCRIPTION, missingVars),
        ];
        expect(a, JSON.stringify(foreignVars)).toEqual(b);
        expect(
          a.errors?.map((e) => e.extensions?.code),
          JSON.stringify(foreignVars),
        ).toEqual(['NOT_FOUND']);
      }
    });

    it('messageCreated of another app or recipient answers NOT_FOUND too', async () => {
      const query = 'subscription ($app: ID!, $rcp: String) { messageCreated(appId: $app, recipientId: $rcp) { id } }';
      const cases: [Record<string, unknown>, Record<string, unknown>][] = [
        [{ app: foreign[1]!.appId }, { app: newId('App') }],
        [{ app: foreign[2]!.appId }, { app: newId('App') }],
        [
          { app: own.appId, rcp: 'customer_2' },
          { app: own.appId, rcp: 'nobody_at_all' },
        ],
      ];
      for (const [foreignVars, missingVars] of cases) {
        const [a, b] = [await firstOutcome(ws, query, foreignVars), await firstOutcome(ws, query, missingVars)];
        expect(a, JSON.stringify(foreignVars)).toEqual(b);
        expect(
          a.errors?.map((e) => e.extensions?.code),
          JSON.stringify(foreignVars),
        ).toEqual(['NOT_FOUND']);
      }
    });

    it("endpointHealthChanged carries only its own recipient's endpoints, with their health", async () => {
      const query = 'subscription ($app: ID!) { endpointHealthChanged(appId: $app) { id health { status } } }';
      const received: { id: string; health: { status: string } }[] = [];
      let resolveOwn!: () => void;
      const ownArrived = new Promise<void>((resolve) => (resolveOwn = resolve));
      const before = t.dispatch.live.listenersAdded();
      const stop = ws.subscribe<{ endpointHealthChanged: { id: string; health: { status: string } } }>(
        { query, variables: { app: own.appId } },
        {
          next: (value) => {
            expect(value.errors).toBeUndefined();
            received.push(value.data!.endpointHealthChanged);
            if (value.data!.endpointHealthChanged.id === own.endpointId) resolveOwn();
          },
          error: (error) => {
            throw error;
          },
          complete: () => undefined,
        },
      );
      await t.dispatch.live.whenListenersAdded(before + 1);
      // Being disabled is a health change; PostgreSQL announces it on commit, whoever wrote it.
      const pool = t.dispatch.db.pool;
      const setDisabled = (ids: string[], disabled: boolean) =>
        pool.query(`UPDATE "Endpoint" SET disabled = $2 WHERE id = ANY($1::text[])`, [ids, disabled]);
      for (const f of foreign) await setDisabled([f.endpointId], true);
      await setDisabled([own.endpointId], true);
      await ownArrived;
      stop();
      await setDisabled(
        [own, ...foreign].map((o) => o.endpointId),
        false,
      );
      expect(received).toEqual([{ id: own.endpointId, health: { status: 'DISABLED' } }]);
    });

    it('endpointHealthChanged of another app or recipient answers NOT_FOUND; operationalEvent is FORBIDDEN', async () => {
      const query =
        'subscription ($app: ID!, $rcp: String) { endpointHealthChanged(appId: $app, recipientId: $rcp) { id } }';
      const cases: [Record<string, unknown>, Record<string, unknown>][] = [
        [{ app: foreign[1]!.appId }, { app: newId('App') }],
        [{ app: foreign[2]!.appId }, { app: newId('App') }],
        [
          { app: own.appId, rcp: 'customer_2' },
          { app: own.appId, rcp: 'nobody_at_all' },
        ],
      ];
      for (const [foreignVars, missingVars] of cases) {
        const [a, b] = [await firstOutcome(ws, query, foreignVars), await firstOutcome(ws, query, missingVars)];
        expect(a, JSON.stringify(foreignVars)).toEqual(b);
        expect(
          a.errors?.map((e) => e.extensions?.code),
          JSON.stringify(foreignVars),
        ).toEqual(['NOT_FOUND']);
      }
      const ops = await firstOutcome(ws, 'subscription { operationalEvent { id } }', {});
      expect(ops.errors?.map((e) => e.extensions?.code)).toEqual(['FORBIDDEN']);
    });

    it('a revoked or expired token cannot open a socket', async () => {
      const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
        input: { appId: own.appId, recipientId: 'customer_4' },
      });
      await t.client.raw('mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }', {
        input: { appId: own.appId, recipientId: 'customer_4' },
      });
      const revoked = wsClient(t.url, createPortalSession.token);
      const outcome = await firstOutcome(revoked, SUBSCRIPTION, { app: own.appId });
      await revoked.dispose();
      expect(outcome.closed).toMatchObject({ code: 4401, reason: expect.stringMatching(/^UNAUTHENTICATED/) });
    });
  });

  it('a revoked token answers UNAUTHENTICATED; revoking one recipient leaves the others signed in', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: own.appId, recipientId: 'customer_3' },
    });
    const third = t.clientFor(createPortalSession.token);
    expect((await third.raw('{ viewer { kind } }')).data).toEqual({ viewer: { kind: 'PORTAL' } });
    const revoked = await t.client.raw(
      'mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }',
      {
        input: { appId: own.appId, recipientId: 'customer_3' },
      },
    );
    expect(revoked.data).toEqual({ revokePortalSessions: 1 });
    const after = await third.raw('{ viewer { kind } }');
    expect(codesOf(after)).toEqual(['UNAUTHENTICATED']);
    expect(after.status).toBe(401);
    expect((await portal.raw('{ viewer { kind } }')).data).toEqual({ viewer: { kind: 'PORTAL' } });
  });

  it('an expired token answers UNAUTHENTICATED, as does one never issued', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: own.appId, recipientId: own.recipientUid, expiresInSeconds: 1 },
    });
    const shortLived = t.clientFor(createPortalSession.token);
    expect((await shortLived.raw('{ viewer { kind } }')).data).toEqual({ viewer: { kind: 'PORTAL' } });
    // Expiry is a point in time, not an event: wait until it has passed.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, Date.parse(createPortalSession.expiresAt) - Date.now()) + 50),
    );
    expect(codesOf(await shortLived.raw('{ viewer { kind } }'))).toEqual(['UNAUTHENTICATED']);
    const forged = t.clientFor(`dpt_${'A'.repeat(43)}`);
    expect(codesOf(await forged.raw('{ viewer { kind } }'))).toEqual(['UNAUTHENTICATED']);
    expect(portalToken).toMatch(/^dpt_[A-Za-z0-9_-]{43}$/);
  });
});
