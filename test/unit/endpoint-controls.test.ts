import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fifoCursor, fifoTurn, MAX_PAUSE_MS, pauseMs, planRate } from '../../src/webhooks/endpoint-controls.ts';

/** The window of these tests: one second and a 100 ms margin. */
const RATE_WINDOW_MS = 1100;

describe('the rate window', () => {
  it('grants up to the limit at once, then none until the oldest grant leaves the window', () => {
    const first = planRate({ sent: [], now: 10_000, limit: 3, want: 5, windowMs: RATE_WINDOW_MS });
    expect(first.granted).toBe(3);
    expect(first.sent).toEqual([10_000, 10_000, 10_000]);
    // The two left wait for the places the first grants free.
    expect(first.retryAt).toEqual([10_000 + RATE_WINDOW_MS, 10_000 + RATE_WINDOW_MS]);

    const soon = planRate({
      sent: first.sent,
      now: 10_000 + RATE_WINDOW_MS - 1,
      limit: 3,
      want: 1,
      windowMs: RATE_WINDOW_MS,
    });
    expect(soon.granted).toBe(0);
    const then = planRate({
      sent: first.sent,
      now: 10_000 + RATE_WINDOW_MS,
      limit: 3,
      want: 2,
      windowMs: RATE_WINDOW_MS,
    });
    expect(then.granted).toBe(2);
    expect(then.sent).toEqual([10_000 + RATE_WINDOW_MS, 10_000 + RATE_WINDOW_MS]);
  });

  it('spreads a backlog over the windows to come', () => {
    const plan = planRate({ sent: [0, 500], now: 600, limit: 2, want: 5, windowMs: RATE_WINDOW_MS });
    expect(plan.granted).toBe(0);
    expect(plan.retryAt).toEqual([
      RATE_WINDOW_MS,
      500 + RATE_WINDOW_MS,
      2 * RATE_WINDOW_MS,
      500 + 2 * RATE_WINDOW_MS,
      3 * RATE_WINDOW_MS,
    ]);
  });

  it('a lowered limit grants nothing until the window holds fewer than it', () => {
    expect(planRate({ sent: [1, 2, 3, 4], now: 10, limit: 2, want: 1, windowMs: RATE_WINDOW_MS }).granted).toBe(0);
  });

  it('grants nothing while paused, and spreads the waiting tries from the end of the pause', () => {
    const plan = planRate({ sent: [], now: 1_000, limit: 2, want: 3, pausedUntil: 5_000, windowMs: RATE_WINDOW_MS });
    expect(plan.granted).toBe(0);
    expect(plan.retryAt).toEqual([5_000, 5_000, 5_000 + RATE_WINDOW_MS]);
    expect(
      planRate({ sent: [], now: 5_000, limit: 2, want: 1, pausedUntil: 5_000, windowMs: RATE_WINDOW_MS }).granted,
    ).toBe(1);
  });

  it('never grants more than the limit in any window, however the tries come', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.record({ gap: fc.integer({ min: 0, max: 700 }), want: fc.integer({ min: 0, max: 10 }) }), {
          maxLength: 60,
        }),
        (limit, calls) => {
          let sent: number[] = [];
          let now = 0;
          const grants: number[] = [];
          for (const { gap, want } of calls) {
            now += gap;
            const plan = planRate({ sent, now, limit, want, windowMs: RATE_WINDOW_MS });
            expect(plan.granted).toBeLessThanOrEqual(want);
            expect(plan.retryAt).toHaveLength(want - plan.granted);
            for (const at of plan.retryAt) expect(at).toBeGreaterThan(now);
            for (let i = 0; i < plan.granted; i++) grants.push(now);
            sent = plan.sent;
            expect(sent.length).toBeLessThanOrEqual(limit);
          }
          for (const start of grants) {
            expect(grants.filter((t) => t >= start && t < start + RATE_WINDOW_MS).length).toBeLessThanOrEqual(limit);
          }
        },
      ),
    );
  });

  it('refuses a limit that is not a positive whole number', () => {
    expect(() => planRate({ sent: [], now: 0, limit: 0, want: 1, windowMs: RATE_WINDOW_MS })).toThrow(RangeError);
  });
});

describe('a 429 pause', () => {
  it('lasts what Retry-After asks, at most an hour; nothing for a missing or non-positive value', () => {
    expect(pauseMs(2_000)).toBe(2_000);
    expect(pauseMs(10 * MAX_PAUSE_MS)).toBe(MAX_PAUSE_MS);
    expect(pauseMs(undefined)).toBeNull();
    expect(pauseMs(0)).toBeNull();
    expect(pauseMs(-5)).toBeNull();
  });
});

describe('the FIFO turn', () => {
  it('goes when nothing unfinished comes before it', () => {
    expect(fifoTurn('dlv_b', 'dlv_b')).toEqual({ go: true });
    expect(fifoTurn('dlv_b', null)).toEqual({ go: true });
  });
  it('is held behind the first unfinished delivery before it', () => {
    expect(fifoTurn('dlv_c', 'dlv_a')).toEqual({ go: false, heldBy: 'dlv_a' });
  });
  it('a delivery before the cursor (committed late) goes, and moves the cursor back to it', () => {
    expect(fifoTurn('dlv_a', 'dlv_c')).toEqual({ go: true });
    expect(fifoCursor('dlv_c', 'dlv_a')).toBe('dlv_a');
    expect(fifoCursor('dlv_a', 'dlv_c')).toBe('dlv_a');
    expect(fifoCursor(null, 'dlv_c')).toBe('dlv_c');
  });
});
