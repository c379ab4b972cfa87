import { comparePositions, type Position } from './cursor.ts';
import { type CommitSnapshot, endedBefore, type LogEvent, type LogTail } from './log.ts';

/**
 * One subscriber of a feed with cursors: the log tail's events in memory
 * (at most `capacity`) and, before them, a range of the log still to be
 * read from the database (the "gap"). The subscription is its async iterator.
 *
 * - Subscribed with a cursor behind the tail, the gap is (cursor, the tail's
 *   position then]: the events after the cursor are read from the database
 *   while the live ones queue behind them. No gap, no duplicate at the seam:
 *   the queue joins the tail and reads its position in the same tick.
 * - Falling more than `capacity` events behind does not lose them: the
 *   queued events are dropped from memory and the gap is extended to the
 *   newest one, to be read again from the database when the subscriber
 *   reads. Memory stays bounded; nothing is cut off.
 * - A database read failing is tried again (with backoff), from the same
 *   position: nothing is skipped.
 */
export interface LogQueueOptions<R> {
  tail: LogTail;
  capacity: number;
  /** Start after this position (a cursor); absent: at the tail's position, i.e. from now on. */
  after?: Position;
  /**
   * Without `after`: the moment the subscription began. The tail's position
   * can lag behind transactions that have already committed (it waits for
   * every older transaction of the server to end), so events of
   * transactions that had ended by then are not handed over: the feed
   * starts with what commits after it was asked for.
   */
  since?: CommitSnapshot;
  /** Cheap, synchronous: whether a live event concerns this subscriber. */
  accept(event: LogEvent): boolean;
  /** The subscriber's events in (after, upTo] from the database, in order, at most `limit`. */
  readRange(after: Position, upTo: Position, limit: number): Promise<LogEvent[]>;
  /** For each event, what to hand the subscriber, or null to skip it (not visible, gone). */
  load(events: LogEvent[]): Promise<(R | null)[]>;
  /** Most events read and loaded at once (default 100). */
  batch?: number;
  onDelivered?(): void;
  /** Events dropped from memory, to be read again from the database. */
  onOverflow?(count: number): void;
  onReadFailed?(error: unknown): void;
  /** Called once when the subscription ends, however it ends. */
  onEnd?(): void;
}

export class LogQueue<R> implements AsyncIterableIterator<R> {
  /** Every event up to here has been handed over (or was not the subscriber's). */
  private position: Position;
  /** Read (position, gapEnd] from the database before the buffer. */
  private gapEnd: Position | undefined;
  private buffer: LogEvent[] = [];
  private head = 0;
  private ready: R[] = [];
  private failure: Error | undefined;
  private ended = false;
  private failures = 0;
  private wake: (() => void) | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly options: LogQueueOptions<R>) {
    const { tail, after } = options;
    // Both in this tick: every event past the tail's position reaches push().
    this.unsubscribe = tail.subscribe((event) => this.push(event));
    const now = tail.position;
    if (after && comparePositions(after, now) < 0) {
      this.position = after;
      this.gapEnd = now;
    } else {
      this.position = after ?? now;
    }
  }

  /** Events queued in memory. */
  get size(): number {
    return this.buffer.length - this.head;
  }

  /** Whether the subscriber still has events to read from the database. */
  get catchingUp(): boolean {
    return this.gapEnd !== undefined;
  }

  private push(event: LogEvent) {
    if (this.ended || this.failure) return;
    if (comparePositions(event, this.position) <= 0 || !this.options.accept(event)) return;
    if (this.size >= this.options.capacity) {
      this.options.onOverflow?.(this.size + 1);
      this.buffer = [];
      this.head = 0;
      this.gapEnd = { xid: event.xid, seq: event.seq };
    } else {
      this.buffer.push(event);
    }
    this.wakeUp();
  }

  /** Ends the subscription from the server's side: the subscriber's next read fails with `error`. */
  end(error: Error): void {
    if (this.ended || this.failure) return;
    this.failure = error;
    this.buffer = [];
    this.head = 0;
    this.ready = [];
    this.unsubscribe();
    this.wakeUp();
  }

  private wakeUp() {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private wait(ms?: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => this.wakeUp(), ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private finish() {
    if (this.ended) return;
    this.ended = true;
    this.buffer = [];
    this.head = 0;
    this.ready = [];
    this.unsubscribe();
    this.options.onEnd?.();
    this.wakeUp();
  }

  /** The next events to load and the position they reach, from the gap first, else from memory. */
  private async take(limit: number): Promise<{ events: LogEvent[]; reach: Position } | undefined> {
    if (this.gapEnd) {
      const end = this.gapEnd;
      // From the tail's memory when it reaches back that far (the same event objects, shared), else the database.
      const events =
        this.options.tail.recent(this.position, end, this.options.accept, limit) ??
        (await this.options.readRange(this.position, end, limit));
      return { events, reach: events.length === limit ? events.at(-1)! : end };
    }
    if (this.size === 0) return undefined;
    const events = this.buffer.slice(this.head, this.head + limit);
    return { events, reach: events.at(-1)! };
  }

  async next(): Promise<IteratorResult<R>> {
    const limit = this.options.batch ?? 100;
    for (;;) {
      if (this.ended) return { done: true, value: undefined };
      if (this.ready.length) {
        this.options.onDelivered?.();
        return { done: false, value: this.ready.shift()! };
      }
      if (this.failure) {
        const failure = this.failure;
        this.finish();
        throw failure;
      }
      let values: (R | null)[];
      let taken: { events: LogEvent[]; reach: Position } | undefined;
      try {
        taken = await this.take(limit);
        if (!taken) {
          await this.wait();
          continue;
        }
        const { since } = this.options;
        const fresh = since ? taken.events.filter((event) => !endedBefore(event.xid, since)) : taken.events;
        values = fresh.length ? await this.options.load(fresh) : [];
        this.failures = 0;
      } catch (error) {
        // The database is restarting: try again from the same position.
        this.options.onReadFailed?.(error);
        this.failures++;
        await this.wait(Math.min(2000, 50 * 2 ** this.failures));
        continue;
      }
      if (this.ended || this.failure) continue;
      const fromMemory = !taken.events.length || taken.events[0] === this.buffer[this.head];
      if (comparePositions(taken.reach, this.position) > 0) this.position = taken.reach;
      if (this.gapEnd && comparePositions(this.position, this.gapEnd) >= 0) this.gapEnd = undefined;
      if (fromMemory && !this.gapEnd) {
        // Taken from memory and not dropped meanwhile (an overflow empties it and opens a gap).
        this.head += taken.events.length;
        if (this.head > 1024 && this.head * 2 > this.buffer.length) {
          this.buffer = this.buffer.slice(this.head);
          this.head = 0;
        }
      }
      for (const value of values) if (value !== null) this.ready.push(value);
    }
  }

  async return(): Promise<IteratorResult<R>> {
    this.finish();
    return { done: true, value: undefined };
  }

  async throw(error?: unknown): Promise<IteratorResult<R>> {
    this.finish();
    throw error;
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}
