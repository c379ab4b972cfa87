import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatchClient } from '../../packages/client/src/index.ts';
import { CreateAppDocument, CreatePortalSessionDocument } from '../../packages/client/src/index.ts';
import { createSender, type Sender } from '../../src/delivery/sender.ts';
import { checkHeaders } from '../../src/domain/endpoints.ts';
import { createAddressPolicy } from '../../src/webhooks/outbound-safety.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

const CREATE = `mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id headers } }`;
const UPDATE = `mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { id headers } }`;

/** Values HTTP cannot carry: the sender could never deliver them. */
const UNSENDABLE = {
  'a control character (\\x01)': 'a\u0001b',
  'DEL (\\x7f)': 'a\u007fb',
  'a line break': 'a\r\nx-evil: 1',
  'an escape (\\x1b)': '\u001b[31m',
  'a character beyond U+00FF': 'price in €',
};
/** Values HTTP can carry: tab, visible ASCII, space and latin-1. */
const SENDABLE = ['Bearer abc.def', 'with\ttab', 'café', ' spaced ', ''];

describe('custom header values are saved only when they can be sent', () => {
  let t: TestDispatch;
  let appId: string;
  let portal: DispatchClient;
  let receiver: Receiver;
  let sender: Sender;
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Headers' } })).createApp.id;
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_1' },
    });
    portal = t.clientFor(createPortalSession.token);
    receiver = await startReceiver();
    sender = createSender({ policy: createAddressPolicy(['127.0.0.0/8']) });
  });
  afterAll(async () => {
    await sender.close();
    await receiver.close();
    await t.stop();
  });

  let n = 0;
  const url = () => `https://example.com/hooks/${++n}`;
  const endpointsOf = () => t.dispatch.db.prisma.endpoint.count({ where: { appId } });

  for (const [who, client] of [
    ['operator', () => t.client],
    ['portal', () => portal],
  ] as const) {
    it(`${who}: createEndpoint and updateEndpoint refuse a value HTTP cannot carry (BAD_USER_INPUT), and store nothing`, async () => {
      const created = await client().raw<{ createEndpoint: { id: string } }>(CREATE, {
        input: { appId, recipientId: 'customer_1', url: url(), headers: { 'x-ok': 'fine' } },
      });
      expect(created.errors).toBeUndefined();
      const id = created.data!.createEndpoint.id;
      for (const [what, value] of Object.entries(UNSENDABLE)) {
        const before = await endpointsOf();
        const refused = await expectError(client(), 'BAD_USER_INPUT', CREATE, {
          input: { appId, recipientId: 'customer_1', url: url(), headers: { 'x-custom': value } },
        });
        expect(refused.errors![0]!.message, what).toMatch(/x-custom.*character HTTP does not allow/);
        expect(await endpointsOf()).toBe(before);
        await expectError(client(), 'BAD_USER_INPUT', UPDATE, { input: { id, headers: { 'x-custom': value } } });
      }
      const stored = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id } });
      expect(stored.headers).toEqual({ 'x-ok': 'fine' });
    });
  }

  it('accepts tab, visible ASCII, space and latin-1, and they are sent as saved', async () => {
    const headers = Object.fromEntries(SENDABLE.map((value, i) => [`x-h${i}`, value]));
    const created = await t.client.raw<{ createEndpoint: { headers: Record<string, string> } }>(CREATE, {
      input: { appId, recipientId: 'customer_1', url: url(), headers },
    });
    expect(created.errors).toBeUndefined();
    expect(created.data!.createEndpoint.headers).toEqual(headers);
  });

  it('the sender applies the same rule: what saving refuses is never sent, what it accepts is', async () => {
    const values = [...SENDABLE, ...Object.values(UNSENDABLE), 'a\u0000b', '\u00ff\u0100'];
    for (const value of values) {
      let saved: boolean;
      try {
        checkHeaders({ 'x-custom': value });
        saved = true;
      } catch {
        saved = false;
      }
      const before = receiver.received.length;
      const result = await sender.send({ url: `${receiver.url}/h`, headers: { 'x-custom': value }, body: '{}' });
      expect(result.ok, JSON.stringify(value)).toBe(saved);
      if (saved) {
        expect(receiver.received[before]!.headers['x-custom']).toBe(
          Buffer.from(value.trim(), 'latin1').toString('latin1'),
        );
      } else {
        expect(result.errorKind).toBe('invalid_request');
        expect(result.error).toMatch(/x-custom.*character HTTP does not allow/);
        expect(receiver.received.length).toBe(before);
      }
    }
  });
});
