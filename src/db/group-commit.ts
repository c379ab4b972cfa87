/**
 * Group commit: the calls made while one batch is being written queue up and
 * are written together by the next, so a busy process pays one round trip
 * (and one commit) for many items and an idle one writes a lone item at
 * once. Each caller still resolves only once its own item is written. A
 * batch that fails as a whole is written item by item, so one item's error
 * is its own.
 */
export interface GroupCommitOptions<I, O> {
  /** Most items written by one batch. */
  maxBatch: number;
  /** Writes the items; returns one outcome per item, in order. */
  writeBatch(items: I[]): Promise<O[]>;
  /** Writes one item, after its batch failed. */
  writeAlone(item: I): Promise<O>;
  onBatchFailed?(error: unknown, size: number): void;
}

export function createGroupCommit<I, O>(options: GroupCommitOptions<I, O>): (item: I) => Promise<O> {
  type Entry = { item: I; resolve: (outcome: O) => void; reject: (error: unknown) => void };
  let queued: Entry[] = [];
  let flushing = false;

  async function flush() {
    flushing = true;
    try {
      while (queued.length) {
        const batch = queued.slice(0, options.maxBatch);
        queued = queued.slice(options.maxBatch);
        try {
          const outcomes = await options.writeBatch(batch.map((e) => e.item));
          for (const [i, e] of batch.entries()) e.resolve(outcomes[i]!);
        } catch (error) {
          options.onBatchFailed?.(error, batch.length);
          await Promise.all(batch.map((e) => options.writeAlone(e.item).then(e.resolve, e.reject)));
        }
      }
    } finally {
      flushing = false;
    }
  }

  return (item) =>
    new Promise((resolve, reject) => {
      queued.push({ item, resolve, reject });
      if (!flushing) void flush();
    });
}
