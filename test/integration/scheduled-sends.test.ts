import { describe, expect, it } from 'vitest';
import {
  CancelScheduledMessageDocument,
  CreatePortalSessionDocument,
  SendMessageDocument,
  UpdateEndpointDocument,
} from '../../packages/client/src/index.ts';
import { scheduledTryJobId } from '../../src/delivery/queue.ts';
import { createEndpoint, deliveriesOf, send, settled, useDeliveryApp } from '../support/delivery.ts';
import type { TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { eventually } from '../support/receiver.ts';

const CANCEL =
  'mutation ($input: CancelScheduledMessageInput!) { cancelScheduledMessage(input: $input) { canceled { id status } } }';
const SEND = 'mutation ($input: SendMessageInput!) { sendMessage(input: $input) { message { id deliverAt } } }';

const inSeconds = (s: number) => new Date(Date.now() + s * 1000);

describe('scheduled sends (deliverAt) and cancelScheduledMessage', () => {
  let t: TestDispatch;
  let appId: string;
  const receiver = useDeliveryApp({ retrySchedule: [1], attemptTimeoutMs: 2_000 }, (started) => {
    ({ t, appId } = started);
  });

  const scheduledJobs = async (deliveryIds: string[]) => {
    const { rows } = await t.dispatch.db.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pgboss.job WHERE id = ANY($1::uuid[])`,
      [deliveryIds.map(scheduledTryJobId)],
    );
    return rows[0]!.n;
  };

  it('stores the message now and makes its first try no earlier than deliverAt', async () => {
    const r = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'later', url: r.url });
    const deliverAt = inSeconds(2);
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: 'later',
        eventType: 'invoice.paid',
        data: { n: 1 },
        deliverAt: deliverAt.toISOString(),
      },
    });
    expect(sendMessage.message.deliverAt).toBe(deliverAt.toISOString());
    // Visible as scheduled before it is due.
    expect(sendMessage.message.deliveries.nodes.map((d) => [d.status, d.nextAttemptAt])).toEqual([
      ['SCHEDULED', deliverAt.toISOString()],
    ]);
    const arrived = await r.nth(1);
    expect(arrived.at).toBeGreaterThanOrEqual(deliverAt.getTime());
    await settled(t.dispatch.db.pool, sendMessage.message.id, ['SUCCEEDED']);
  });

  it('a deliverAt in the past is now; more than 30 days ahead is DELIVER_AT_TOO_LATE', async () => {
    const r = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'past', url: r.url });
    const before = Date.now();
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'past', eventType: 'invoice.paid', data: {}, deliverAt: new Date(0).toISOString() },
    });
    expect(new Date(sendMessage.message.deliverAt!).getTime()).toBeGreaterThanOrEqual(before - 1000);
    expect(sendMessage.message.deliveries.nodes[0]!.status).not.toBe('SCHEDULED');
    await r.nth(1);

    const tooLate = await expectError(t.client, 'DELIVER_AT_TOO_LATE', SEND, {
      input: { appId, recipientId: 'past', eventType: 'invoice.paid', data: {}, deliverAt: inSeconds(31 * 86_400) },
    });
    expect(tooLate.errors![0]!.message).toMatch(/30 days/);
    // Thirty days less a minute is fine.
    const { sendMessage: far } = await t.client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: 'past',
        eventType: 'invoice.paid',
        data: {},
        deliverAt: inSeconds(30 * 86_400 - 60).toISOString(),
      },
    });
    expect(far.message.deliveries.nodes[0]!.status).toBe('SCHEDULED');
    await expectError(t.client, 'BAD_USER_INPUT', SEND, {
      input: { appId, recipientId: 'past', eventType: 'invoice.paid', data: {}, deliverAt: 'next tuesday' },
    });
  });

  it('sending the same messageId again returns the stored scheduled message and queues nothing new', async () => {
    const r = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'dedupe', url: r.url });
    const deliverAt = inSeconds(2);
    const input = { appId, recipientId: 'dedupe', eventType: 'invoice.paid', data: { n: 2 }, messageId: 'sched-1' };
    const first = await t.client.request(SendMessageDocument, {
      input: { ...input, deliverAt: deliverAt.toISOString() },
    });
    const again = await t.client.request(SendMessageDocument, {
      input: { ...input, deliverAt: inSeconds(600).toISOString() },
    });
    expect(again.sendMessage.deduplicated).toBe(true);
    expect(again.sendMessage.message.id).toBe(first.sendMessage.message.id);
    expect(again.sendMessage.message.deliverAt).toBe(deliverAt.toISOString());
    const arrived = await r.nth(1);
    expect(arrived.at).toBeGreaterThanOrEqual(deliverAt.getTime());
    await settled(t.dispatch.db.pool, first.sendMessage.message.id, ['SUCCEEDED']);
    expect(r.received).toHaveLength(1);
  });

  it('cancels the tries not yet started: nothing arrives, and the jobs are gone', async () => {
    const r = await receiver();
    const other = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'cancel', url: r.url });
    await createEndpoint(t.client, { appId, recipientId: 'cancel', url: other.url });
    const deliverAt = inSeconds(2);
    const canceled = await t.client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: 'cancel',
        eventType: 'invoice.paid',
        data: { keep: false },
        messageId: 'to-cancel',
        deliverAt: deliverAt.toISOString(),
      },
    });
    const deliveryIds = canceled.sendMessage.message.deliveries.nodes.map((d) => d.id);
    expect(await scheduledJobs(deliveryIds)).toBe(2);

    const { cancelScheduledMessage } = await t.client.request(CancelScheduledMessageDocument, {
      input: { appId, messageId: 'to-cancel' },
    });
    expect(cancelScheduledMessage.canceled.map((d) => d.status)).toEqual(['CANCELED', 'CANCELED']);
    expect(cancelScheduledMessage.canceled.map((d) => d.id).sort()).toEqual([...deliveryIds].sort());
    expect(await scheduledJobs(deliveryIds)).toBe(0);
    // Canceling again cancels nothing more.
    const again = await t.client.request(CancelScheduledMessageDocument, { input: { appId, messageId: 'to-cancel' } });
    expect(again.cancelScheduledMessage.canceled).toEqual([]);

    // A message scheduled a little later than the canceled one arrives; the canceled one never did.
    await send(t.client, { appId, recipientId: 'cancel', data: { keep: true } });
    const keptLater = await t.client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: 'cancel',
        eventType: 'invoice.paid',
        data: { keep: 'later' },
        deliverAt: new Date(deliverAt.getTime() + 1000).toISOString(),
      },
    });
    const last = await r.nth(2);
    await other.nth(2);
    expect(JSON.parse(last.body).data).toEqual({ keep: 'later' });
    expect(last.at).toBeGreaterThan(deliverAt.getTime());
    await settled(t.dispatch.db.pool, keptLater.sendMessage.message.id, ['SUCCEEDED']);
    expect(r.received.map((x) => JSON.parse(x.body).data)).toEqual([{ keep: true }, { keep: 'later' }]);
    expect(other.received.map((x) => JSON.parse(x.body).data)).toEqual([{ keep: true }, { keep: 'later' }]);
    expect((await deliveriesOf(t.dispatch.db.pool, canceled.sendMessage.message.id)).map((d) => d.status)).toEqual([
      'CANCELED',
      'CANCELED',
    ]);
  });

  it('a message whose tries started (or that was not scheduled) is NOT_CANCELABLE', async () => {
    const r = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'started', url: r.url });
    const now = await send(t.client, { appId, recipientId: 'started', messageId: 'sent-now' });
    await settled(t.dispatch.db.pool, now.id, ['SUCCEEDED']);
    const refused = await expectError(t.client, 'NOT_CANCELABLE', CANCEL, { input: { appId, messageId: 'sent-now' } });
    expect(refused.errors![0]!.message).toMatch(/not scheduled/);

    const soon = await t.client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: 'started',
        eventType: 'invoice.paid',
        data: {},
        messageId: 'was-scheduled',
        deliverAt: inSeconds(1).toISOString(),
      },
    });
    await settled(t.dispatch.db.pool, soon.sendMessage.message.id, ['SUCCEEDED']);
    const late = await expectError(t.client, 'NOT_CANCELABLE', CANCEL, {
      input: { appId, messageId: 'was-scheduled' },
    });
    expect(late.errors![0]!.message).toMatch(/started/);
    await expectError(t.client, 'NOT_FOUND', CANCEL, { input: { appId, messageId: 'never-sent' } });
  });

  it("a portal token cancels its own recipient's scheduled messages, and no one else's", async () => {
    const r = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'portal-own', url: r.url });
    await createEndpoint(t.client, { appId, recipientId: 'portal-other', url: r.url });
    const later = inSeconds(3600).toISOString();
    const own = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'portal-own', eventType: 'invoice.paid', data: {}, deliverAt: later },
    });
    const foreign = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'portal-other', eventType: 'invoice.paid', data: {}, deliverAt: later },
    });
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'portal-own' },
    });
    const portal = t.clientFor(createPortalSession.token);
    await expectError(portal, 'NOT_FOUND', CANCEL, { input: { appId, messageId: foreign.sendMessage.message.id } });
    const stranger = await t.newWorkspace();
    await expectError(stranger.client, 'NOT_FOUND', CANCEL, {
      input: { appId, messageId: own.sendMessage.message.id },
    });
    const { cancelScheduledMessage } = await portal.request(CancelScheduledMessageDocument, {
      input: { appId, messageId: own.sendMessage.message.id },
    });
    expect(cancelScheduledMessage.canceled.map((d) => d.status)).toEqual(['CANCELED']);
    expect((await deliveriesOf(t.dispatch.db.pool, foreign.sendMessage.message.id)).map((d) => d.status)).toEqual([
      'SCHEDULED',
    ]);
  });

  it('a scheduled delivery whose endpoint is disabled when it is due becomes FAILED, as any held-back delivery', async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'paused', url: r.url });
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: {
        appId,
        recipientId: 'paused',
        eventType: 'invoice.paid',
        data: {},
        deliverAt: inSeconds(1).toISOString(),
      },
    });
    await t.client.request(UpdateEndpointDocument, { input: { id: endpoint.id, disabled: true } });
    const [delivery] = await deliveriesOf(t.dispatch.db.pool, sendMessage.message.id);
    // Its job runs at deliverAt and is gone once it has.
    await eventually(async () => ((await scheduledJobs([delivery!.id])) === 0 ? true : undefined));
    expect((await settled(t.dispatch.db.pool, sendMessage.message.id, ['FAILED'])).nextAttemptAt).toBeNull();
    expect(r.received).toHaveLength(0);
  });
});
