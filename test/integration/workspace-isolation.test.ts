import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatchClient } from '../../packages/client/src/index.ts';
import {
  CreateApiKeyDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  RevokeApiKeyDocument,
  SendMessageDocument,
  ViewerDocument,
} from '../../packages/client/src/index.ts';
import { newId } from '../../src/domain/ids.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { codesOf } from '../support/graphql.ts';

/** Ids of the same types as the first workspace's objects, that exist nowhere. */
const missing = {
  workspace: 'ws_00000000000000000000000000',
  apiKey: 'key_00000000000000000000000000',
  app: 'app_00000000000000000000000000',
  eventType: 'evt_00000000000000000000000000',
  recipient: 'rcp_00000000000000000000000000',
  endpoint: 'ep_00000000000000000000000000',
  message: 'msg_00000000000000000000000000',
  delivery: 'dlv_00000000000000000000000000',
  attempt: 'atm_00000000000000000000000000',
};

describe('workspace isolation', () => {
  let t: TestDispatch;
  let other: { client: DispatchClient; workspaceId: string; apiKey: string };
  const first = {} as typeof missing & { messageUid: string; recipientUid: string };

  beforeAll(async () => {
    // API role only: deliveries stay as sendMessage left them, and nothing is sent to the example.com endpoints.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    other = await t.newWorkspace('Other workspace');
    const viewer = await t.client.request(ViewerDocument);
    first.workspace = viewer.viewer.workspace!.id;
    first.apiKey = (await t.dispatch.db.prisma.apiKey.findFirstOrThrow({ where: { workspaceId: first.workspace } })).id;
    first.app = (await t.client.request(CreateAppDocument, { input: { name: 'Private app' } })).createApp.id;
    first.eventType = (
      await t.client.request(CreateEventTypeDocument, { input: { appId: first.app, name: 'secret.event' } })
    ).createEventType.id;
    first.recipientUid = 'customer_1';
    first.endpoint = (
      await t.client.request(CreateEndpointDocument, {
        input: { appId: first.app, recipientId: first.recipientUid, url: 'https://example.com/private' },
      })
    ).createEndpoint.id;
    first.messageUid = 'private-message-1';
    const sent = await t.client.request(SendMessageDocument, {
      input: {
        appId: first.app,
        recipientId: first.recipientUid,
        eventType: 'secret.event',
        data: { secret: 42 },
        messageId: first.messageUid,
      },
    });
    first.message = sent.sendMessage.message.id;
    first.delivery = sent.sendMessage.message.deliveries.nodes[0]!.id;
    first.recipient = (await t.dispatch.db.prisma.recipient.findFirstOrThrow({ where: { appId: first.app } })).id;
    // An attempt as the delivery engine records it.
    first.attempt = newId('Attempt');
    await t.dispatch.db.prisma.attempt.create({
      data: {
        id: first.attempt,
        appId: first.app,
        recipientId: first.recipient,
        messageId: first.message,
        endpointId: first.endpoint,
        deliveryId: first.delivery,
        status: 'FAILED',
        url: 'https://example.com/private',
        responseStatusCode: 500,
        responseBody: 'secret body',
      },
    });
  });
  afterAll(async () => t.stop());

  /** Runs `query` for the other workspace with the first one's ids, and with missing ids: both answers must be identical. */
  async function sameAsMissing(query: string, variables: (ids: typeof missing) => Record<string, unknown>) {
    const foreign = await other.client.raw(query, variables(first));
    const absent = await other.client.raw(query, variables(missing));
    expect(foreign).toEqual(absent);
    return foreign;
  }

  it('the first workspace sees its own objects (so the checks below can fail)', async () => {
    const result = await t.client.raw<{ node: { id: string } | null }>(`query ($id: ID!) { node(id: $id) { id } }`, {
      id: first.attempt,
    });
    expect(result.data?.node?.id).toBe(first.attempt);
    const app = await t.client.raw<{ app: { messages: { nodes: unknown[] } } }>(
      `query ($id: ID!) { app(id: $id) { messages { nodes { id } } } }`,
      {
        id: first.app,
      },
    );
    expect(app.data?.app.messages.nodes).toHaveLength(1);
  });

  it('root fields: apps is empty; app, recipient, endpoint and message are null exactly as for missing ids', async () => {
    const apps = await other.client.raw<{ apps: { nodes: unknown[]; pageInfo: { hasNextPage: boolean } } }>(
      `{ apps(first: 100) { nodes { id } pageInfo { hasNextPage } } }`,
    );
    expect(apps.data?.apps).toEqual({ nodes: [], pageInfo: { hasNextPage: false } });

    for (const query of [
      `query ($app: ID!) { app(id: $app) { id name } }`,
      `query ($app: ID!, $rcp: String!) { recipient(appId: $app, recipientId: $rcp) { id } }`,
      `query ($ep: ID!) { endpoint(id: $ep) { id secret } }`,
      `query ($app: ID!, $msg: ID!) { message(appId: $app, id: $msg) { id data } }`,
    ]) {
      const result = await sameAsMissing(query, (ids) => ({
        app: ids.app,
        rcp: ids === missing ? 'nobody' : first.recipientUid,
        ep: ids.endpoint,
        msg: ids.message,
      }));
      expect(Object.values(result.data ?? {}), query).toEqual([null]);
      expect(result.errors, query).toBeUndefined();
    }
    // The caller's messageId finds nothing either.
    const byUid = await other.client.raw(`query ($app: ID!, $msg: ID!) { message(appId: $app, id: $msg) { id } }`, {
      app: first.app,
      msg: first.messageUid,
    });
    expect(byUid).toEqual({ data: { message: null }, status: 200 });
  });

  it('node(id:) and nodes(ids:) answer null for every type of the first workspace, as for missing ids', async () => {
    for (const key of Object.keys(missing) as (keyof typeof missing)[]) {
      const result = await sameAsMissing(`query ($id: ID!) { node(id: $id) { id __typename } }`, (ids) => ({
        id: ids[key],
      }));
      expect(result, key).toEqual({ data: { node: null }, status: 200 });
    }
    const all = await other.client.raw<{ nodes: unknown[] }>(`query ($ids: [ID!]!) { nodes(ids: $ids) { id } }`, {
      ids: Object.values(first).filter((v) => /^[a-z]+_/.test(v) && !v.startsWith('private')),
    });
    expect(all.errors).toBeUndefined();
    expect(all.data?.nodes.every((n) => n === null)).toBe(true);
  });

  it("nested connections of the other workspace's own objects never reach the first one's rows", async () => {
    const app = (await other.client.request(CreateAppDocument, { input: { name: 'Their app' } })).createApp.id;
    await other.client.request(CreateEventTypeDocument, { input: { appId: app, name: 'secret.event' } });
    // The same recipient id and message id as the first workspace uses.
    await other.client.request(SendMessageDocument, {
      input: {
        appId: app,
        recipientId: first.recipientUid,
        eventType: 'secret.event',
        data: { mine: true },
        messageId: first.messageUid,
      },
    });
    const result = await other.client.raw<{
      apps: {
        nodes: {
          id: string;
          eventTypes: { name: string }[];
          endpoints: { nodes: unknown[] };
          recipients: {
            nodes: {
              recipientId: string;
              endpoints: { nodes: unknown[] };
              messages: {
                nodes: { data: unknown; deliveries: { nodes: unknown[] }; attempts: { nodes: unknown[] } }[];
              };
            }[];
          };
          messages: { nodes: { id: string }[] };
        }[];
      };
    }>(
      `{ apps(first: 5) { nodes { id eventTypes(includeArchived: true) { name } endpoints { nodes { id } }
           recipients(first: 5) { nodes { recipientId endpoints { nodes { id } } messages(first: 5) { nodes { data deliveries { nodes { id } } attempts { nodes { id } } } } } }
           messages { nodes { id } } } } }`,
    );
    expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
    expect(result.data?.apps.nodes).toHaveLength(1);
    const theirs = result.data!.apps.nodes[0]!;
    expect(theirs.id).toBe(app);
    expect(theirs.endpoints.nodes).toEqual([]);
    expect(theirs.recipients.nodes).toHaveLength(1);
    expect(theirs.recipients.nodes[0]!.endpoints.nodes).toEqual([]);
    expect(theirs.recipients.nodes[0]!.messages.nodes).toEqual([
      { data: { mine: true }, deliveries: { nodes: [] }, attempts: { nodes: [] } },
    ]);
    expect(JSON.stringify(result.data)).not.toContain(first.message);
  });

  it('every mutation on a foreign id answers NOT_FOUND exactly as on a missing id, and changes nothing', async () => {
    const snapshot = async () => ({
      app: await t.dispatch.db.prisma.app.findUniqueOrThrow({ where: { id: first.app } }),
      eventTypes: await t.dispatch.db.prisma.eventType.findMany({
        where: { appId: first.app },
        orderBy: { id: 'asc' },
      }),
      endpoint: await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({
        where: { id: first.endpoint },
        include: { secrets: true },
      }),
      messages: await t.dispatch.db.prisma.message.count({ where: { appId: first.app } }),
      recipients: await t.dispatch.db.prisma.recipient.count({ where: { appId: first.app } }),
      portalSessions: await t.dispatch.db.prisma.portalSession.count({ where: { appId: first.app } }),
      apiKey: await t.dispatch.db.prisma.apiKey.findUniqueOrThrow({ where: { id: first.apiKey } }),
    });
    const before = await snapshot();
    const mutations: [string, (ids: typeof missing) => Record<string, unknown>][] = [
      [
        `mutation ($input: UpdateAppInput!) { updateApp(input: $input) { id } }`,
        (ids) => ({ input: { id: ids.app, name: 'stolen' } }),
      ],
      [
        `mutation ($input: CreateEventTypeInput!) { createEventType(input: $input) { id } }`,
        (ids) => ({ input: { appId: ids.app, name: 'injected' } }),
      ],
      [
        `mutation ($input: ArchiveEventTypeInput!) { archiveEventType(input: $input) { id } }`,
        (ids) => ({ input: { appId: ids.app, name: 'secret.event' } }),
      ],
      [
        `mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }`,
        (ids) => ({ input: { appId: ids.app, recipientId: 'customer_1', url: 'https://evil.example/' } }),
      ],
      [
        `mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { id } }`,
        (ids) => ({ input: { id: ids.endpoint, url: 'https://evil.example/' } }),
      ],
      [
        `mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { id } }`,
        (ids) => ({ input: { id: ids.endpoint, disabled: true } }),
      ],
      [
        `mutation ($input: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $input) { secret } }`,
        (ids) => ({ input: { id: ids.endpoint } }),
      ],
      [
        `mutation ($input: DeleteEndpointInput!) { deleteEndpoint(input: $input) { id } }`,
        (ids) => ({ input: { id: ids.endpoint } }),
      ],
      [
        `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated } }`,
        (ids) => ({
          input: {
            appId: ids.app,
            recipientId: 'customer_1',
            eventType: 'secret.event',
            data: { secret: 42 },
            messageId: 'private-message-1',
          },
        }),
      ],
      [
        `mutation ($input: CreatePortalSessionInput!) { createPortalSession(input: $input) { token } }`,
        (ids) => ({ input: { appId: ids.app, recipientId: 'customer_1' } }),
      ],
      [
        `mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }`,
        (ids) => ({ input: { appId: ids.app, recipientId: 'customer_1' } }),
      ],
      [
        `mutation ($input: RevokeApiKeyInput!) { revokeApiKey(input: $input) { id } }`,
        (ids) => ({ input: { id: ids.apiKey } }),
      ],
    ];
    for (const [mutation, variables] of mutations) {
      const result = await sameAsMissing(mutation, variables);
      expect(codesOf(result), mutation).toEqual(['NOT_FOUND']);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('the viewer is the key’s own workspace', async () => {
    const { viewer } = await other.client.request(ViewerDocument);
    expect(viewer).toMatchObject({ kind: 'OPERATOR', workspace: { id: other.workspaceId, name: 'Other workspace' } });
  });

  describe('authentication', () => {
    const attempt = async (authorization: string | undefined) => {
      const response = await fetch(`${t.url}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
        body: JSON.stringify({ query: '{ apps { nodes { id name } } }' }),
      });
      return {
        status: response.status,
        body: (await response.json()) as { data?: unknown; errors?: { extensions?: { code?: string } }[] },
      };
    };

    it.each([
      ['no Authorization header', undefined],
      ['an empty header', ''],
      ['Bearer with no token', 'Bearer '],
      ['garbage', 'Bearer garbage'],
      ['a key of the right shape that does not exist', `Bearer dk_${'A'.repeat(43)}`],
      ['a truncated key', 'KEY_PREFIX_ONLY'],
      ['another scheme', 'Basic dXNlcjpwYXNz'],
      ['a portal token that does not exist', `Bearer dpt_${'A'.repeat(43)}`],
    ])('%s answers 401 UNAUTHENTICATED with no data', async (_what, header) => {
      const value = header === 'KEY_PREFIX_ONLY' ? `Bearer ${t.apiKey.slice(0, 20)}` : header;
      const { status, body } = await attempt(value);
      expect(status).toBe(401);
      expect(body.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect(body.data ?? null).toBeNull();
    });

    it('a revoked key answers 401 UNAUTHENTICATED at once, and other keys keep working', async () => {
      const doomed = await t.newWorkspace('Revoking workspace');
      const keep = await doomed.client.request(
        // A second key of the same workspace, which must survive the revocation.
        CreateApiKeyDocument,
        { input: { name: 'survivor' } },
      );
      expect((await attempt(`Bearer ${doomed.apiKey}`)).status).toBe(200);
      const ownId = (
        await t.dispatch.db.prisma.apiKey.findFirstOrThrow({ where: { workspaceId: doomed.workspaceId, name: null } })
      ).id;
      await t.clientFor(keep.createApiKey.token).request(RevokeApiKeyDocument, { input: { id: ownId } });
      const { status, body } = await attempt(`Bearer ${doomed.apiKey}`);
      expect(status).toBe(401);
      expect(body.errors?.map((e) => e.extensions?.code)).toEqual(['UNAUTHENTICATED']);
      expect((await attempt(`Bearer ${keep.createApiKey.token}`)).status).toBe(200);
    });
  });
});
