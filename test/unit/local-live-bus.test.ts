import { describe, expect, it } from 'vitest';
import {
  type AttemptEvent,
  createLocalLiveBus,
  type DatabaseAnnouncements,
  type EndpointEvent,
  type MessageEvent,
} from '../../src/live/bus.ts';

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

describe("the in-process live bus with the database's announcements", () => {
  it('passes on endpoint and message events the database announces, and listens and is interrupted as its connection is', async () => {
    const messageListeners = new Set<(event: MessageEvent) => void>();
    const endpointListeners = new Set<(event: EndpointEvent) => void>();
    const interruptionListeners = new Set<(reason: string) => void>();
    let listening = false;
    let closed = false;
    const add = <L>(listeners: Set<L>, listener: L) => {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    };
    const database: DatabaseAnnouncements = {
      subscribeMessages: (l) => add(messageListeners, l),
      subscribeEndpoints: (l) => add(endpointListeners, l),
      subscribeInterruptions: (l) => add(interruptionListeners, l),
      get isListening() {
        return listening;
      },
      close: async () => {
        closed = true;
      },
    };
    const bus = createLocalLiveBus({ database });
    expect(bus.isListening).toBe(false);
    listening = true;
    expect(bus.isListening).toBe(true);
    const endpoints: string[] = [];
    const messages: string[] = [];
    const reasons: string[] = [];
    bus.subscribeEndpoints((event) => endpoints.push(event.endpointId));
    bus.subscribeMessages((event) => messages.push(event.messageId));
    bus.subscribeInterruptions((reason) => reasons.push(reason));
    for (const l of endpointListeners) l({ endpointId: 'ep_1', appId: 'app_1', recipientId: 'rcp_1' });
    for (const l of messageListeners) l({ messageId: 'msg_ops', appId: 'app_ops', recipientId: 'rcp_ops' });
    await bus.publishMessage(message);
    for (const l of interruptionListeners) l('connection lost');
    expect(endpoints).toEqual(['ep_1']);
    expect(messages).toEqual(['msg_ops', 'msg_1']);
    expect(reasons).toEqual(['connection lost']);
    await bus.close();
    expect(closed).toBe(true);
    expect(messageListeners.size + endpointListeners.size).toBe(0);
  });
});
