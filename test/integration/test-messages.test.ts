import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
  type DispatchClient,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

const SEND_TEST = `mutation ($input: SendTestMessageInput!) {
  sendTestMessage(input: $input) { message { id messageId eventType test data recipientId deliveries(first: 10) { nodes { endpoint { id } } } } }
}`;
const EXAMPLE = `query ($appId: ID!, $name: String!) { app(id: $appId) { eventType(name: $name) { example } } }`;
const UNARCHIVE = `mutation ($input: ArchiveEventTypeInput!) { unarchiveEventType(input: $input) { name archived } }`;
const ARCHIVE = `mutation ($input: ArchiveEventTypeInput!) { archiveEventType(input: $input) { name archived } }`;
const CREATE_ENDPOINT = `mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }`;

const SCHEMA = {
  type: 'object',
  required: ['invoiceId', 'amount'],
  properties: { invoiceId: { type: 'string', examples: ['inv_42'] }, amount: { type: 'integer', minimum: 1 } },
};

describe('sendTestMessage: a test event from the portal, to its own endpoints only', () => {
  let t: TestDispatch;
  let receiver: Receiver;
  let other: Receiver;
  let appId: string;
  let portal: DispatchClient;
  let ownEndpoint: string;
  let foreignEndpoint: string;

  beforeAll(async () => {
    [t, receiver, other] = await Promise.all([startTestDispatch(), startReceiver(), startReceiver()]);
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Billing' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.paid', schema: SCHEMA } });
    await t.client.request(CreateEventTypeDocument, {
      input: { appId, name: 'invoice.voided', schema: { type: 'object', examples: [{ reason: 'duplicate' }] } },
    });
    ownEndpoint = (
      await t.client.request(CreateEndpointDocument, { input: { appId, recipientId: 'alice', url: receiver.url } })
    ).createEndpoint.id;
    foreignEndpoint = (
      await t.client.request(CreateEndpointDocument, { input: { appId, recipientId: 'bob', url: other.url } })
    ).createEndpoint.id;
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'alice' },
    });
    portal = t.clientFor(createPortalSession.token);
  });
  afterAll(async () => Promise.all([t?.stop(), receiver?.close(), other?.close()]));

  it("sends the event type's example when given no data, marked test, and the customer's endpoint receives it", async () => {
    const result = await portal.raw(SEND_TEST, { input: { eventType: 'invoice.voided' } });
    expect(result.errors).toBeUndefined();
    const { message } = (result.data as { sendTestMessage: { message: Record<string, unknown> } }).sendTestMessage;
    expect(message).toMatchObject({ eventType: 'invoice.voided', test: true, recipientId: 'alice' });
    expect(message.data).toEqual({ reason: 'duplicate' });
    const got = await receiver.nth(1);
    expect(got.headers['webhook-id']).toBe(message.messageId);
    expect(JSON.parse(got.body).data).toEqual({ reason: 'duplicate' });
    expect(other.received).toHaveLength(0);
  });

  it("offers an example made from the schema (its properties' examples), which passes the schema", async () => {
    const result = await portal.raw(EXAMPLE, { appId, name: 'invoice.paid' });
    const example = (result.data as { app: { eventType: { example: unknown } } }).app.eventType.example;
    expect(example).toEqual({ invoiceId: 'inv_42', amount: 1 });
    const sent = await portal.raw(SEND_TEST, { input: { eventType: 'invoice.paid', endpointId: ownEndpoint } });
    expect(sent.errors).toBeUndefined();
  });

  it("checks given data against the event type's schema (INVALID_PAYLOAD)", async () => {
    await expectError(portal, 'INVALID_PAYLOAD', SEND_TEST, {
      input: { eventType: 'invoice.paid', data: { invoiceId: 7 } },
    });
  });

  it("cannot reach another recipient's endpoint: NOT_FOUND, nothing stored or sent", async () => {
    const before = await t.dispatch.db.prisma.message.count();
    await expectError(portal, 'NOT_FOUND', SEND_TEST, {
      input: { eventType: 'invoice.voided', endpointId: foreignEndpoint },
    });
    expect(await t.dispatch.db.prisma.message.count()).toBe(before);
    expect(other.received).toHaveLength(0);
  });

  it('refuses an unknown or archived event type (UNKNOWN_EVENT_TYPE) and an API key (FORBIDDEN)', async () => {
    await expectError(portal, 'UNKNOWN_EVENT_TYPE', SEND_TEST, { input: { eventType: 'nope.nothing' } });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.old' } });
    await t.client.raw(ARCHIVE, { input: { appId, name: 'invoice.old' } });
    await expectError(portal, 'UNKNOWN_EVENT_TYPE', SEND_TEST, { input: { eventType: 'invoice.old' } });
    await expectError(t.client, 'FORBIDDEN', SEND_TEST, { input: { eventType: 'invoice.voided' } });
  });

  it('refuses a test no endpoint would receive (BAD_USER_INPUT), and one to an endpoint not taking the type', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'carol' },
    });
    const carol = t.clientFor(createPortalSession.token);
    await expectError(carol, 'BAD_USER_INPUT', SEND_TEST, { input: { eventType: 'invoice.voided' } });
    const created = await carol.raw(CREATE_ENDPOINT, {
      input: { appId, recipientId: 'carol', url: receiver.url, eventTypes: ['invoice.paid'] },
    });
    const id = (created.data as { createEndpoint: { id: string } }).createEndpoint.id;
    await expectError(carol, 'BAD_USER_INPUT', SEND_TEST, { input: { eventType: 'invoice.voided', endpointId: id } });
  });
});

describe('unarchiveEventType', () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Catalog' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, {
      input: { appId, name: 'user.created', description: 'kept', schema: { type: 'object' } },
    });
  });
  afterAll(async () => t?.stop());

  it('makes an archived event type active again with its description and schema; portal tokens may not', async () => {
    await t.client.raw(ARCHIVE, { input: { appId, name: 'user.created' } });
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'r' },
    });
    await expectError(t.clientFor(createPortalSession.token), 'FORBIDDEN', UNARCHIVE, {
      input: { appId, name: 'user.created' },
    });
    const result = await t.client.raw(UNARCHIVE, { input: { appId, name: 'user.created' } });
    expect(result.data).toEqual({ unarchiveEventType: { name: 'user.created', archived: false } });
    const row = await t.dispatch.db.prisma.eventType.findFirstOrThrow({ where: { appId, name: 'user.created' } });
    expect(row).toMatchObject({ archivedAt: null, description: 'kept', schema: { type: 'object' } });
    await expectError(t.client, 'UNKNOWN_EVENT_TYPE', UNARCHIVE, { input: { appId, name: 'never.made' } });
  });
});

describe("an unsafe endpoint URL: the operator's answer names the setting, a customer's does not", () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ALLOW_NETWORKS: '', DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Strict' } })).createApp.id;
  });
  afterAll(async () => t?.stop());

  it('UNSAFE_URL either way; only the API key is told about DISPATCH_ALLOW_NETWORKS', async () => {
    const input = { appId, recipientId: 'dave', url: 'http://10.0.0.1/hook' };
    const operator = await expectError(t.client, 'UNSAFE_URL', CREATE_ENDPOINT, { input });
    expect(operator.errors![0]!.message).toContain('DISPATCH_ALLOW_NETWORKS');
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'dave' },
    });
    const customer = await expectError(t.clientFor(createPortalSession.token), 'UNSAFE_URL', CREATE_ENDPOINT, {
      input,
    });
    const message = customer.errors![0]!.message;
    expect(message).not.toMatch(/DISPATCH_|ALLOW_NETWORKS|unless/);
    expect(message).toBe(
      'url host 10.0.0.1 is a private address: webhooks are delivered to public addresses only; use a URL on the public internet',
    );
  });
});
