import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import {
  CreatePortalSessionDocument,
  RecoverEndpointDocument,
  ResendMessageDocument,
  RotateEndpointSecretDocument,
  UpdateEndpointDocument,
} from '../../packages/client/src/index.ts';
import { attemptsOf, createEndpoint, deliveriesOf, send, settled, useDeliveryApp } from '../support/delivery.ts';
import type { TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { eventually, type Receiver } from '../support/receiver.ts';

const RESEND = 'mutation ($input: ResendMessageInput!) { resendMessage(input: $input) { id status } }';
const RECOVER = 'mutation ($input: RecoverEndpointInput!) { recoverEndpoint(input: $input) { queued } }';

const headersOf = (r: Receiver, n: number) => {
  const h = r.received[n - 1]!.headers;
  return {
    'webhook-id': String(h['webhook-id']),
    'webhook-timestamp': String(h['webhook-timestamp']),
    'webhook-signature': String(h['webhook-signature']),
  };
};

describe('replay and secret rotation', () => {
  let t: TestDispatch;
  let appId: string;
  const receiver = useDeliveryApp({ retrySchedule: [1], attemptTimeoutMs: 2_000 }, (started) => {
    ({ t, appId } = started);
  });

  it('signs with the old and the new secret during the grace period, with the new one only after it', async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'rotating', url: r.url });
    const oldSecret = endpoint.secret;
    const { rotateEndpointSecret } = await t.client.request(RotateEndpointSecretDocument, {
      input: { id: endpoint.id, gracePeriodSeconds: 3600 },
    });
    const newSecret = rotateEndpointSecret.secret;
    await send(t.client, { appId, recipientId: 'rotating' });
    const during = await r.nth(1);
    expect(String(during.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(() => new Webhook(oldSecret).verify(during.body, headersOf(r, 1))).not.toThrow();
    expect(() => new Webhook(newSecret).verify(during.body, headersOf(r, 1))).not.toThrow();

    // Rotating with no grace retires every older secret now.
    const { rotateEndpointSecret: again } = await t.client.request(RotateEndpointSecretDocument, {
      input: { id: endpoint.id, gracePeriodSeconds: 0 },
    });
    await send(t.client, { appId, recipientId: 'rotating' });
    const after = await r.nth(2);
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1);
    expect(() => new Webhook(again.secret).verify(after.body, headersOf(r, 2))).not.toThrow();
    expect(() => new Webhook(newSecret).verify(after.body, headersOf(r, 2))).toThrow();
    expect(() => new Webhook(oldSecret).verify(after.body, headersOf(r, 2))).toThrow();
  });

  it('resends a message to one endpoint as a MANUAL attempt with the same webhook-id', async () => {
    const r = await receiver();
    const other = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'resend-one', url: r.url });
    await createEndpoint(t.client, { appId, recipientId: 'resend-one', url: other.url });
    const message = await send(t.client, { appId, recipientId: 'resend-one', messageId: 'inv.77' });
    await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED'], endpoint.id);
    await other.nth(1);

    const { resendMessage } = await t.client.request(ResendMessageDocument, {
      input: { appId, messageId: 'inv.77', endpointId: endpoint.id },
    });
    expect(resendMessage).toHaveLength(1);
    expect(resendMessage[0]!.endpoint.id).toBe(endpoint.id);
    const again = await r.nth(2);
    expect(again.headers['webhook-id']).toBe('inv.77');
    const delivery = await eventually(async () => {
      const [row] = (await deliveriesOf(t.dispatch.db.pool, message.id)).filter((d) => d.endpointId === endpoint.id);
      return row && row.status === 'SUCCEEDED' && row.attemptCount === 2 ? row : undefined;
    });
    const attempts = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(attempts.map((a) => [a.trigger, a.status])).toEqual([
      ['SCHEDULED', 'SUCCEEDED'],
      ['MANUAL', 'SUCCEEDED'],
    ]);
    expect(other.received).toHaveLength(1);
  });

  it('resends to every subscribed enabled endpoint, including one added after the message', async () => {
    const first = await receiver();
    const later = await receiver();
    const unsubscribed = await receiver();
    const paused = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'resend-all', url: first.url });
    const message = await send(t.client, { appId, recipientId: 'resend-all' });
    await first.nth(1);
    await createEndpoint(t.client, { appId, recipientId: 'resend-all', url: later.url, eventTypes: ['invoice.paid'] });
    await createEndpoint(t.client, {
      appId,
      recipientId: 'resend-all',
      url: unsubscribed.url,
      eventTypes: ['invoice.voided'],
    });
    await createEndpoint(t.client, { appId, recipientId: 'resend-all', url: paused.url, disabled: true });

    const { resendMessage } = await t.client.request(ResendMessageDocument, {
      input: { appId, messageId: message.id },
    });
    expect(resendMessage.map((d) => d.endpoint.url).sort()).toEqual([first.url, later.url].sort());
    await first.nth(2);
    const late = await later.nth(1);
    expect(late.headers['webhook-id']).toBe(message.id);
    expect(unsubscribed.received).toHaveLength(0);
    expect(paused.received).toHaveLength(0);
  });

  it('refuses a disabled endpoint (ENDPOINT_DISABLED) and a foreign one (NOT_FOUND)', async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'resend-refused', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'resend-refused' });
    await r.nth(1);
    await t.client.request(UpdateEndpointDocument, { input: { id: endpoint.id, disabled: true } });
    await expectError(t.client, 'ENDPOINT_DISABLED', RESEND, {
      input: { appId, messageId: message.id, endpointId: endpoint.id },
    });
    await expectError(t.client, 'ENDPOINT_DISABLED', RECOVER, {
      input: { endpointId: endpoint.id, since: new Date(0).toISOString() },
    });

    // Another recipient's endpoint, another workspace's message: missing alike.
    const elsewhere = await createEndpoint(t.client, { appId, recipientId: 'someone-else', url: r.url });
    await expectError(t.client, 'NOT_FOUND', RESEND, {
      input: { appId, messageId: message.id, endpointId: elsewhere.id },
    });
    const stranger = await t.newWorkspace();
    await expectError(stranger.client, 'NOT_FOUND', RESEND, { input: { appId, messageId: message.id } });
    await expectError(stranger.client, 'NOT_FOUND', RECOVER, {
      input: { endpointId: elsewhere.id, since: new Date(0).toISOString() },
    });
    await expectError(t.client, 'BAD_USER_INPUT', RECOVER, {
      input: { endpointId: elsewhere.id, since: new Date(Date.now() + 60_000).toISOString() },
    });
    expect(r.received).toHaveLength(1);
  });

  it('recovers every FAILED delivery of an endpoint in the window, in the background', async () => {
    const r = await receiver([], { status: 500 });
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'recover', url: r.url });
    const messages = [];
    for (let i = 0; i < 3; i++) messages.push(await send(t.client, { appId, recipientId: 'recover', data: { i } }));
    for (const m of messages) await settled(t.dispatch.db.pool, m.id, ['FAILED']);
    expect(r.received).toHaveLength(6);

    // A window that holds none of them queues nothing.
    const before = new Date(Date.parse(messages[0]!.createdAt) - 60_000);
    const none = await t.client.request(RecoverEndpointDocument, {
      input: {
        endpointId: endpoint.id,
        since: before.toISOString(),
        until: new Date(before.getTime() + 1_000).toISOString(),
      },
    });
    expect(none.recoverEndpoint.queued).toBe(0);

    const { recoverEndpoint } = await t.client.request(RecoverEndpointDocument, {
      input: { endpointId: endpoint.id, since: before.toISOString() },
    });
    expect(recoverEndpoint.queued).toBe(3);
    // Each gets one manual attempt (they fail again: manual attempts are not retried).
    await r.nth(9);
    for (const m of messages) {
      const [delivery] = await deliveriesOf(t.dispatch.db.pool, m.id);
      const done = await eventually(async () => {
        const attempts = await attemptsOf(t.dispatch.db.pool, delivery!.id);
        return attempts.length === 3 && attempts[2]!.finishedAt ? attempts : undefined;
      });
      expect(done.map((a) => a.trigger)).toEqual(['SCHEDULED', 'SCHEDULED', 'MANUAL']);
      await settled(t.dispatch.db.pool, m.id, ['FAILED']);
    }
    expect(new Set(r.received.slice(6).map((x) => x.headers['webhook-id']))).toEqual(
      new Set(messages.map((m) => m.id)),
    );
  });

  it("lets a portal token resend and recover its own recipient's messages, and nobody else's", async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'portal-owner', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'portal-owner' });
    await r.nth(1);
    const otherR = await receiver();
    const otherEndpoint = await createEndpoint(t.client, { appId, recipientId: 'portal-other', url: otherR.url });
    const otherMessage = await send(t.client, { appId, recipientId: 'portal-other' });
    await otherR.nth(1);

    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'portal-owner' },
    });
    const portal = t.clientFor(createPortalSession.token);
    const { resendMessage } = await portal.request(ResendMessageDocument, { input: { appId, messageId: message.id } });
    expect(resendMessage.map((d) => d.endpoint.id)).toEqual([endpoint.id]);
    await r.nth(2);
    const recovered = await portal.request(RecoverEndpointDocument, {
      input: { endpointId: endpoint.id, since: new Date(0).toISOString() },
    });
    expect(recovered.recoverEndpoint.queued).toBe(0);

    await expectError(portal, 'NOT_FOUND', RESEND, { input: { appId, messageId: otherMessage.id } });
    await expectError(portal, 'NOT_FOUND', RESEND, {
      input: { appId, messageId: message.id, endpointId: otherEndpoint.id },
    });
    await expectError(portal, 'NOT_FOUND', RECOVER, {
      input: { endpointId: otherEndpoint.id, since: new Date(0).toISOString() },
    });
    expect(otherR.received).toHaveLength(1);
  });
});
