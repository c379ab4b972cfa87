/** The one list of error codes clients see in `extensions.code`. */
export const ERROR_CODES = [
  'UNAUTHENTICATED',
  'FORBIDDEN',
  'NOT_FOUND',
  'BAD_USER_INPUT',
  'UNKNOWN_EVENT_TYPE',
  'INVALID_PAYLOAD',
  /** Checking the data against its event type's schema took longer than allowed: send smaller data or simplify the schema. */
  'VALIDATION_TIMEOUT',
  'PAYLOAD_TOO_LARGE',
  'IDEMPOTENCY_CONFLICT',
  'UNSAFE_URL',
  'ENDPOINT_DISABLED',
  'RATE_LIMITED',
  /** sendMessage's deliverAt is further ahead than MAX_SCHEDULE_AHEAD_SECONDS. */
  'DELIVER_AT_TOO_LATE',
  /** cancelScheduledMessage: the message has no try left to cancel (they started, or it was not scheduled). */
  'NOT_CANCELABLE',
  /**
   * The database is unreachable or restarting, or what a send depends on (its
   * event type, the recipient's endpoints) kept changing under it (HTTP 503):
   * nothing was done; try again shortly.
   */
  'SERVICE_UNAVAILABLE',
  /**
   * A live-feed subscription ended because events may have been missed (the
   * process lost its connection to the bus): subscribe again, then re-read
   * with queries what may have changed.
   */
  'FEED_INTERRUPTED',
  /**
   * A live-feed subscription's `after` cursor is older than what retention
   * keeps of the feed: the events after it are gone. Re-read with queries,
   * then subscribe again without `after` (or with a newer cursor).
   */
  'CURSOR_EXPIRED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** An error meant for the client: its message and code are shown as they are. */
export class DispatchError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DispatchError';
    this.code = code;
    this.details = details;
  }
}

export const notFound = (what: string) => new DispatchError('NOT_FOUND', `${what} not found`);
export const badInput = (message: string, details?: Record<string, unknown>) =>
  new DispatchError('BAD_USER_INPUT', message, details);
export const forbidden = (message = 'this token may not do that') => new DispatchError('FORBIDDEN', message);
