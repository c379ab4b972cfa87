import { describe, expect, it } from 'vitest';
import { type AttemptEvent, createLocalLiveBus, type MessageEvent } from '../../src/live/bus.ts';

const attempt: AttemptEvent = {
  attemptId: 'atm_1',
  appId: 'app_1',
  recipientId: 'rcp_1',
  messageId: 'msg_1',
  endpointId: 'ep_1',
  status: 'SENDING',
};
const message: MessageEvent = { messageId: 'msg_1', appId: 'app_1', recipientId: 'rcp_1' };

describe('the in-process live bus (the API without a bus across processes)', () => {
  it("hands what this process publishes to this process's listeners, in order, until they unsubscribe", async () => {
    const bus = createLocalLiveBus();
    expect(bus.isListening).toBe(true);
    const seen: string[] = [];
    const record = (event: { messageId: string }) => seen.push(event.messageId);
    const offAttempts = bus.subscribeAttempts((event) => seen.push(event.attemptId));
    const offMessages = bus.subscribeMessages(record);
    // The same function subscribed twice is two listeners, each removed on its own.
    const offAgain = bus.subscribeMessages(record);
    await bus.publishAttempt(attempt);
    await bus.publishMessage(message);
    expect(seen).toEqual(['atm_1', 'msg_1', 'msg_1']);
    offAgain();
    await bus.publishMessage(message);
    expect(seen).toEqual(['atm_1', 'msg_1', 'msg_1', 'msg_1']);
    offAttempts();
    offMessages();
    await bus.publishAttempt(attempt);
    await bus.publishMessage(message);
    expect(seen).toHaveLength(4);
    // It has no connection to lose.
    const interruptions: string[] = [];
    bus.subscribeInterruptions((reason) => interruptions.push(reason))();
    await bus.close();
    expect(interruptions).toEqual([]);
  });
});
