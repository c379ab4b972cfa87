/**
 * The live-feed bus: workers publish attempt and message events (ids only),
 * API processes fan them out to subscribers. Implemented over PostgreSQL
 * LISTEN/NOTIFY (pg-bus.ts) by every process Dispatch starts; in-process
 * (createLocalLiveBus) when none is configured, e.g. the API built without
 * one: its subscribers then see what this process publishes.
 */
export interface AttemptEvent {
  attemptId: string;
  appId: string;
  recipientId: string;
  messageId: string;
  endpointId: string;
  status: 'SENDING' | 'SUCCEEDED' | 'FAILED';
}

export interface MessageEvent {
  messageId: string;
  appId: string;
  recipientId: string;
}

/** An endpoint's health changed (sent by PostgreSQL itself: a trigger on "Endpoint", on commit). */
export interface EndpointEvent {
  endpointId: string;
  appId: string;
  recipientId: string;
}

export interface LiveBus {
  publishAttempt(event: AttemptEvent): Promise<void>;
  publishMessage(event: MessageEvent): Promise<void>;
  subscribeAttempts(listener: (event: AttemptEvent) => void): () => void;
  subscribeMessages(listener: (event: MessageEvent) => void): () => void;
  subscribeEndpoints(listener: (event: EndpointEvent) => void): () => void;
  /** Whether events reach this process's listeners now: false while the bus reconnects (and on a bus that does not listen). */
  readonly isListening: boolean;
  /**
   * `listener` is called when events may have been missed: the bus lost its
   * connection (events published until it is back are not received). Returns
   * the function that removes it.
   */
  subscribeInterruptions(listener: (reason: string) => void): () => void;
  close(): Promise<void>;
}

/**
 * A bus within one process: what is published reaches this process's
 * listeners at once, in order. It never loses a connection, so it is always
 * listening and never interrupted.
 */
export function createLocalLiveBus(): LiveBus {
  const attempts = new Set<(event: AttemptEvent) => void>();
  const messages = new Set<(event: MessageEvent) => void>();
  const listen = <E>(listeners: Set<(event: E) => void>, listener: (event: E) => void) => {
    // A wrapper per subscription, so the same function subscribed twice is two listeners.
    const own = (event: E) => listener(event);
    listeners.add(own);
    return () => void listeners.delete(own);
  };
  return {
    async publishAttempt(event) {
      for (const listener of attempts) listener(event);
    },
    async publishMessage(event) {
      for (const listener of messages) listener(event);
    },
    subscribeAttempts: (listener) => listen(attempts, listener),
    subscribeMessages: (listener) => listen(messages, listener),
    // Endpoint health changes (and operational events) are announced by
    // PostgreSQL NOTIFY, which only the PostgreSQL bus hears: none come here.
    subscribeEndpoints: () => () => undefined,
    isListening: true,
    subscribeInterruptions: () => () => undefined,
    async close() {
      attempts.clear();
      messages.clear();
    },
  };
}
