/**
 * The live-feed bus: workers publish attempt and message events (ids only),
 * API processes fan them out to subscribers. Implemented over PostgreSQL
 * LISTEN/NOTIFY by the live feed; in-process when no bus is configured.
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
