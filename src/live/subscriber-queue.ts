/**
 * What one subscriber has not read yet: a bounded queue of bus events that
 * is also the subscription's async iterator. Events are small (ids); the
 * rows they name are loaded as the subscriber pulls, up to `loadBatch` at a
 * time (one read per batch, not per event, so a subscriber keeps up with a
 * fast feed), so a subscriber that does not read holds at most `capacity`
 * ids and `loadBatch` rows.
 *
 * Overflow ends the subscription: the queue is emptied, the bus listener
 * removed, and the subscriber's next read fails with `overflowError` (after
 * whatever its transport had already buffered). Dropping silently would
 * leave a feed that looks complete but is not.
 *
 * An interruption (the bus may have missed events) ends it more gently: the
 * events already queued are still handed over, in order, then `last`, then
 * the iterator is done.
 */
export interface SubscriberQueueOptions<E, R> {
  capacity: number;
  /** Registers the queue's listener on the bus; returns the function that removes it. */
  subscribe(listener: (event: E) => void): () => void;
  /** Cheap, synchronous: whether an event concerns this subscriber at all. */
  accept(event: E): boolean;
  /** Most events loaded at once (default 100). */
  loadBatch?: number;
  /** For each event, the value to hand the subscriber, or null to skip it (not visible, gone). */
  load(events: E[]): Promise<(R | null)[]>;
  overflowError(capacity: number): Error;
  /** The subscriber was cut off; its transport should be closed, as it may never read the error. */
  onOverflow?(error: Error): void;
  onDelivered?(): void;
  /** `count` events were dropped: `overflow` (cut off) or `load_failed`. */
  onDropped?(count: number, reason: 'overflow' | 'load_failed', error?: unknown): void;
  /** Called once when the subscription ends, however it ends. */
  onEnd?(): void;
}

export class SubscriberQueue<E, R> implements AsyncIterableIterator<R> {
  private buffer: (E | undefined)[] = [];
  private ready: R[] = [];
  private head = 0;
  private failure: Error | undefined;
  /** Handed over once the queued events are, then the subscription ends; set by interrupt(). */
  private last: { value: R } | undefined;
  private ended = false;
  private wake: (() => void) | undefined;
  private readonly unsubscribe: () => void;

  constructor(private readonly options: SubscriberQueueOptions<E, R>) {
    this.unsubscribe = options.subscribe((event) => this.push(event));
  }

  get size(): number {
    return this.buffer.length - this.head;
  }

  private push(event: E) {
    if (this.ended || this.failure || this.last || !this.options.accept(event)) return;
    if (this.size >= this.options.capacity) {
      this.options.onDropped?.(this.size + 1, 'overflow');
      this.fail(this.options.overflowError(this.options.capacity));
      this.options.onOverflow?.(this.failure!);
    } else {
      this.buffer.push(event);
    }
    this.wakeUp();
  }

  /**
   * Ends the subscription from the server's side (its credential ended): no
   * more events are taken, and the subscriber's next read fails with `error`.
   */
  end(error: Error): void {
    if (this.ended || this.failure) return;
    this.fail(error);
    this.ready = [];
    this.wakeUp();
  }

  /**
   * Ends the subscription after what it already has: no more events are
   * taken, the queued ones are still loaded and handed over, then `last`.
   */
  interrupt(last: R): void {
    if (this.ended || this.failure || this.last) return;
    this.last = { value: last };
    this.detach();
    this.wakeUp();
  }

  private fail(error: Error) {
    this.failure = error;
    this.buffer = [];
    this.head = 0;
    this.detach();
  }

  private shift(): E | undefined {
    if (this.head >= this.buffer.length) return undefined;
    const event = this.buffer[this.head];
    this.buffer[this.head++] = undefined;
    // Compact now and then so a long-lived queue does not keep a long array.
    if (this.head > 1024 && this.head * 2 > this.buffer.length) {
      this.buffer = this.buffer.slice(this.head);
      this.head = 0;
    }
    return event;
  }

  private wakeUp() {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private detach() {
    this.unsubscribe();
  }

  private finish() {
    if (this.ended) return;
    this.ended = true;
    this.buffer = [];
    this.ready = [];
    this.head = 0;
    this.detach();
    this.options.onEnd?.();
    this.wakeUp();
  }

  async next(): Promise<IteratorResult<R>> {
    const batchSize = this.options.loadBatch ?? 100;
    for (;;) {
      if (this.ended) return { done: true, value: undefined };
      if (this.ready.length) {
        this.options.onDelivered?.();
        return { done: false, value: this.ready.shift()! };
      }
      const events: E[] = [];
      for (let event = this.shift(); event !== undefined; event = events.length < batchSize ? this.shift() : undefined)
        events.push(event);
      if (!events.length) {
        if (this.failure) {
          const failure = this.failure;
          this.finish();
          throw failure;
        }
        if (this.last) {
          const { value } = this.last;
          this.finish();
          return { done: false, value };
        }
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      try {
        const values = await this.options.load(events);
        // Ended while loading: what was loaded is no longer the subscriber's to see.
        if (!this.failure) for (const value of values) if (value !== null) this.ready.push(value);
      } catch (error) {
        // A read failing (database restarting) skips these events; the subscription carries on.
        this.options.onDropped?.(events.length, 'load_failed', error);
      }
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
