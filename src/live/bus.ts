/**
 * The live-feed bus: workers publish attempt and message events (ids only),
 * API processes fan them out to subscribers. Implemented over PostgreSQL
 * LISTEN/NOTIFY (pg-bus.ts) by every process Dispatch starts; in-process
 * (createLocalLiveBus) when none is configured, e.g. the API built without
 * one: its subscribers then see what this process publishes, and what
 * PostgreSQL announces (endpoint health, operational events) when it is
 * given the database's announcements (createDatabaseAnnouncements).
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
 * What PostgreSQL announces itself, for a bus within one process: endpoint
 * health changes (a trigger on "Endpoint") and operational events (messages
 * recorded with a NOTIFY in their transaction). Without it the bus hears only
 * what this process publishes.
 */
export interface DatabaseAnnouncements {
  subscribeMessages(listener: (event: MessageEvent) => void): () => void;
  subscribeEndpoints(listener: (event: EndpointEvent) => void): () => void;
  readonly isListening: boolean;
  subscribeInterruptions(listener: (reason: string) => void): () => void;
  close(): Promise<void>;
}

/**
 * A bus within one process: what is published reaches this process's
 * listeners at once, in order. With `database` it also passes on what
 * PostgreSQL announces (endpoint health, operational events), as the
 * PostgreSQL bus does, and is listening and interrupted as that connection
 * is; without it it never loses a connection.
 */
export function createLocalLiveBus(options: { database?: DatabaseAnnouncements } = {}): LiveBus {
  const { database } = options;
  const attempts = new Set<(event: AttemptEvent) => void>();
  const messages = new Set<(event: MessageEvent) => void>();
  const endpoints = new Set<(event: EndpointEvent) => void>();
  const listen = <E>(listeners: Set<(event: E) => void>, listener: (event: E) => void) => {
    // A wrapper per subscription, so the same function subscribed twice is two listeners.
    const own = (event: E) => listener(event);
    listeners.add(own);
    return () => void listeners.delete(own);
  };
  const fanOut = <E>(listeners: Set<(event: E) => void>, event: E) => {
    for (const listener of listeners) listener(event);
  };
  const fromDatabase = database
    ? [
        database.subscribeMessages((event) => fanOut(messages, event)),
        database.subscribeEndpoints((event) => fanOut(endpoints, event)),
      ]
    : [];
  return {
    async publishAttempt(event) {
      fanOut(attempts, event);
    },
    async publishMessage(event) {
      fanOut(messages, event);
    },
    subscribeAttempts: (listener) => listen(attempts, listener),
    subscribeMessages: (listener) => listen(messages, listener),
    subscribeEndpoints: (listener) => listen(endpoints, listener),
    get isListening() {
      return database?.isListening ?? true;
    },
    subscribeInterruptions: (listener) => database?.subscribeInterruptions(listener) ?? (() => undefined),
    async close() {
      for (const off of fromDatabase) off();
      await database?.close();
      attempts.clear();
      messages.clear();
      endpoints.clear();
    },
  };
}
