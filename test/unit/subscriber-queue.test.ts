import { describe, expect, it } from 'vitest';
import { SubscriberQueue } from '../../src/live/subscriber-queue.ts';

/** A queue on an in-memory bus of numbers; each event loads as its own value. */
function queueOnBus() {
  const listeners = new Set<(event: number) => void>();
  const queue = new SubscriberQueue<number, number | string>({
    capacity: 10,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    accept: () => true,
    load: async (events) => events,
    overflowError: () => new Error('overflow'),
  });
  return {
    queue,
    publish: (event: number) => {
      for (const l of listeners) l(event);
    },
    listeners,
  };
}

describe('SubscriberQueue.interrupt', () => {
  it('hands over the events already queued, in order, then the last value, then ends; later events are not taken', async () => {
    const { queue, publish, listeners } = queueOnBus();
    publish(1);
    publish(2);
    queue.interrupt('interrupted');
    expect(listeners.size).toBe(0);
    publish(3);
    const seen: (number | string)[] = [];
    for await (const value of queue) seen.push(value);
    expect(seen).toEqual([1, 2, 'interrupted']);
  });

  it('wakes a subscriber waiting for events', async () => {
    const { queue } = queueOnBus();
    const next = queue.next();
    queue.interrupt('interrupted');
    expect(await next).toEqual({ done: false, value: 'interrupted' });
    expect(await queue.next()).toEqual({ done: true, value: undefined });
  });
});
