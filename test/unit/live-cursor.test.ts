import { describe, expect, it } from 'vitest';
import { DispatchError } from '../../src/domain/errors.ts';
import { comparePositions, decodeCursor, encodeCursor, type Position } from '../../src/live/cursor.ts';
import type { LogEvent, LogTail } from '../../src/live/log.ts';
import { LogQueue } from '../../src/live/log-queue.ts';

const at = (xid: number, seq: number): Position => ({ xid: BigInt(xid), seq: BigInt(seq) });

describe('live-feed cursors', () => {
  it('round-trip, opaque, up to the largest xid8 and bigint', () => {
    for (const p of [at(0, 0), at(731, 9), { xid: (1n << 63n) - 1n, seq: (1n << 63n) - 1n }]) {
      const cursor = encodeCursor(p);
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeCursor(cursor)).toEqual(p);
    }
  });

  it('order by transaction id, then by sequence', () => {
    const sorted = [at(5, 900), at(3, 7), at(5, 2), at(4, 1000)].sort(comparePositions);
    expect(sorted).toEqual([at(3, 7), at(4, 1000), at(5, 2), at(5, 900)]);
    expect(comparePositions(at(2, 2), at(2, 2))).toBe(0);
  });

  it('refuse anything that is not one of ours with BAD_USER_INPUT', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64url');
    for (const bad of [
      '',
      'not a cursor',
      b64('lf1:1'),
      b64('lf1:-1:2'),
      b64('lf1:01:2'),
      b64('lf2:1:2'),
      b64(`lf1:${1n << 63n}:1`),
      b64('lf1:1:2:3'),
      'x'.repeat(101),
    ]) {
      expect(() => decodeCursor(bad), bad).toThrow(DispatchError);
      try {
        decodeCursor(bad);
      } catch (error) {
        expect((error as DispatchError).code).toBe('BAD_USER_INPUT');
      }
    }
  });
});

/** A tail the test drives: emit() hands an event to the listeners, as the log reader does. */
function fakeTail(start: Position) {
  const listeners = new Set<(event: LogEvent) => void>();
  let position = start;
  const recent: LogEvent[] = [];
  const tail: LogTail & { emit(xid: number, seq: number): LogEvent } = {
    ready: async () => undefined,
    get position() {
      return position;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => void listeners.delete(listener);
    },
    wake: () => undefined,
    recent: () => undefined,
    close: () => undefined,
    emit(xid, seq) {
      const event = logEvent(xid, seq);
      position = event;
      recent.push(event);
      for (const l of listeners) l(event);
      return event;
    },
  };
  return { tail, all: recent };
}

function logEvent(xid: number, seq: number): LogEvent {
  const p = at(xid, seq);
  return {
    ...p,
    kind: 'attempt',
    rowId: `atm_${xid}_${seq}`,
    appId: 'app',
    recipientId: 'rcp',
    messageId: 'msg',
    endpointId: 'ep',
    status: 'SENDING',
    cursor: encodeCursor(p),
  };
}

/** The "database": every event ever emitted, plus `older` ones written before the tail started. */
function queueOver(
  tail: LogTail,
  log: LogEvent[],
  options: { after?: Position; capacity?: number; failReads?: number } = {},
) {
  let failures = options.failReads ?? 0;
  const reads: [Position, Position][] = [];
  const queue = new LogQueue<string>({
    tail,
    capacity: options.capacity ?? 3,
    ...(options.after ? { after: options.after } : {}),
    batch: 2,
    accept: () => true,
    readRange: async (after, upTo, limit) => {
      reads.push([after, upTo]);
      if (failures > 0) {
        failures--;
        throw new Error('database restarting');
      }
      return log
        .filter((e) => comparePositions(e, after) > 0 && comparePositions(e, upTo) <= 0)
        .sort(comparePositions)
        .slice(0, limit);
    },
    load: async (events) => events.map((e) => e.rowId),
  });
  return { queue, reads };
}

async function take(queue: LogQueue<string>, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push((await queue.next()).value as string);
  return out;
}

describe('LogQueue', () => {
  it('from a cursor: the database up to the tail, then live, with no gap and no duplicate at the seam', async () => {
    const older = [logEvent(1, 1), logEvent(1, 2), logEvent(2, 3), logEvent(4, 4)];
    const { tail, all } = fakeTail(at(4, 4));
    const { queue, reads } = queueOver(tail, [...older, ...all], { after: at(1, 1) });
    expect(queue.catchingUp).toBe(true);
    tail.emit(5, 5);
    tail.emit(6, 6);
    expect(await take(queue, 5)).toEqual(['atm_1_2', 'atm_2_3', 'atm_4_4', 'atm_5_5', 'atm_6_6']);
    expect(reads.every(([, upTo]) => comparePositions(upTo, at(4, 4)) === 0)).toBe(true);
    expect(queue.catchingUp).toBe(false);
  });

  it('without a cursor: from now on', async () => {
    const { tail, all } = fakeTail(at(9, 0));
    const { queue, reads } = queueOver(tail, [logEvent(8, 1), ...all]);
    tail.emit(9, 2);
    expect(await take(queue, 1)).toEqual(['atm_9_2']);
    expect(reads).toEqual([]);
  });

  it('a cursor ahead of the tail skips what it already has', async () => {
    const { tail, all } = fakeTail(at(3, 0));
    const { queue } = queueOver(tail, all, { after: at(4, 2) });
    tail.emit(4, 1);
    tail.emit(4, 2);
    tail.emit(4, 3);
    expect(await take(queue, 1)).toEqual(['atm_4_3']);
  });

  it('falling behind drops events from memory, never more than capacity, and reads them again', async () => {
    const { tail, all } = fakeTail(at(1, 0));
    const { queue, reads } = queueOver(tail, all, { capacity: 3 });
    for (let i = 1; i <= 10; i++) tail.emit(1, i);
    expect(queue.size).toBeLessThanOrEqual(3);
    expect(queue.catchingUp).toBe(true);
    const got = await take(queue, 10);
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `atm_1_${i + 1}`));
    expect(reads.length).toBeGreaterThan(0);
    tail.emit(2, 11);
    expect(await take(queue, 1)).toEqual(['atm_2_11']);
  });

  it('a failed read is tried again from the same position: nothing skipped', async () => {
    const older = [logEvent(1, 1), logEvent(1, 2)];
    const { tail, all } = fakeTail(at(1, 2));
    const { queue, reads } = queueOver(tail, [...older, ...all], { after: at(0, 0), failReads: 2 });
    expect(await take(queue, 2)).toEqual(['atm_1_1', 'atm_1_2']);
    expect(reads.length).toBe(3);
    expect(reads.every(([after]) => comparePositions(after, at(0, 0)) === 0)).toBe(true);
  });

  it('ends: return() stops it, end(error) fails its next read', async () => {
    const { tail } = fakeTail(at(1, 0));
    const { queue } = queueOver(tail, []);
    queue.end(new Error('credential ended'));
    await expect(queue.next()).rejects.toThrow('credential ended');
    expect((await queue.next()).done).toBe(true);
  });
});
