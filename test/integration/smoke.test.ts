import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEventTypeDocument,
  SendMessageDocument,
  ViewerDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

describe("a newcomer's first minute", () => {
  let t: TestDispatch;
  beforeAll(async () => {
    t = await startTestDispatch();
  });
  afterAll(async () => t.stop());

  it('creates an app and an event type, sends a message and reads it back with the typed client', async () => {
    const { viewer } = await t.client.request(ViewerDocument);
    expect(viewer.kind).toBe('OPERATOR');
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Billing' } });
    await t.client.request(CreateEventTypeDocument, { input: { appId: createApp.id, name: 'invoice.paid' } });
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId: createApp.id, recipientId: 'customer_1', eventType: 'invoice.paid', data: { amount: 100 } },
    });
    expect(sendMessage.deduplicated).toBe(false);
    expect(sendMessage.message.data).toEqual({ amount: 100 });
  });
});
