import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RETRY_SCHEDULE,
  MAX_RETRY_DELAY_SECONDS,
  maxAttempts,
  nextRetryDelayMs,
  retryAfterDelayMs,
  validateRetrySchedule,
} from '../../src/webhooks/retry.ts';

const noJitter = () => 0.5;

describe('the default retry schedule', () => {
  it('waits 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 tries in all', () => {
    expect(DEFAULT_RETRY_SCHEDULE).toEqual([5, 300, 1800, 7200, 18000, 36000, 36000]);
    expect(maxAttempts(DEFAULT_RETRY_SCHEDULE)).toBe(8);
    const delays = [1, 2, 3, 4, 5, 6, 7].map((attemptNumber) =>
      nextRetryDelayMs({ schedule: DEFAULT_RETRY_SCHEDULE, attemptNumber, random: noJitter }),
    );
    expect(delays).toEqual([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
  });

  it('gives up after the eighth try', () => {
    expect(nextRetryDelayMs({ schedule: DEFAULT_RETRY_SCHEDULE, attemptNumber: 8 })).toBeNull();
    expect(nextRetryDelayMs({ schedule: DEFAULT_RETRY_SCHEDULE, attemptNumber: 9 })).toBeNull();
  });

  it('cannot be changed by accident', () => {
    expect(() => (DEFAULT_RETRY_SCHEDULE as number[]).push(1)).toThrow();
  });
});

describe('jitter', () => {
  it('moves each delay by at most 20 % either way', () => {
    expect(nextRetryDelayMs({ schedule: [300], attemptNumber: 1, random: () => 0 })).toBe(240_000);
    expect(nextRetryDelayMs({ schedule: [300], attemptNumber: 1, random: () => 0.999999 })).toBe(360_000);
    expect(nextRetryDelayMs({ schedule: [300], attemptNumber: 1, random: () => 0.25 })).toBe(270_000);
  });

  it('spreads real random delays over the whole band', () => {
    const delays = Array.from({ length: 2000 }, () => nextRetryDelayMs({ schedule: [5], attemptNumber: 1 })!);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(4_000);
    expect(Math.max(...delays)).toBeLessThanOrEqual(6_000);
    expect(Math.min(...delays)).toBeLessThan(4_100);
    expect(Math.max(...delays)).toBeGreaterThan(5_900);
    expect(delays.every(Number.isInteger)).toBe(true);
  });
});

describe('per-app schedules', () => {
  it('follows an override, and an empty schedule means a single try', () => {
    expect(nextRetryDelayMs({ schedule: [1, 2], attemptNumber: 2, random: noJitter })).toBe(2_000);
    expect(nextRetryDelayMs({ schedule: [1, 2], attemptNumber: 3 })).toBeNull();
    expect(nextRetryDelayMs({ schedule: [], attemptNumber: 1 })).toBeNull();
  });

  it('refuses an attempt number that is not a count of tries', () => {
    expect(() => nextRetryDelayMs({ schedule: [1], attemptNumber: 0 })).toThrow(RangeError);
    expect(() => nextRetryDelayMs({ schedule: [1], attemptNumber: 1.5 })).toThrow(RangeError);
  });

  it('accepts whole seconds from 1 s to 7 days, at most 20 of them', () => {
    expect(validateRetrySchedule(DEFAULT_RETRY_SCHEDULE)).toBeNull();
    expect(validateRetrySchedule([])).toBeNull();
    expect(validateRetrySchedule([1, MAX_RETRY_DELAY_SECONDS])).toBeNull();
    expect(validateRetrySchedule(Array(20).fill(60))).toBeNull();
  });

  it('explains what is wrong with a bad schedule', () => {
    expect(validateRetrySchedule(Array(21).fill(60))).toMatch(/at most 20 delays, got 21/);
    expect(validateRetrySchedule([5, 0])).toMatch(/retrySchedule\[1\].*from 1 to 604800.*got 0/);
    expect(validateRetrySchedule([-5])).toMatch(/retrySchedule\[0\]/);
    expect(validateRetrySchedule([1.5])).toMatch(/whole number/);
    expect(validateRetrySchedule([MAX_RETRY_DELAY_SECONDS + 1])).toMatch(/7 days/);
    expect(validateRetrySchedule([Number.NaN])).toMatch(/retrySchedule\[0\]/);
    expect(validateRetrySchedule(['5' as unknown as number])).toMatch(/got "5"/);
  });
});

describe('Retry-After on 429 and 503', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const scheduled = 300_000; // the next scheduled delay: 5 min

  it('waits as asked when the request falls between the scheduled delay and twice it', () => {
    expect(retryAfterDelayMs('450', scheduled, now)).toBe(450_000);
    expect(retryAfterDelayMs(' 600 ', scheduled, now)).toBe(600_000);
  });

  it('never retries sooner than scheduled', () => {
    expect(retryAfterDelayMs('0', scheduled, now)).toBe(scheduled);
    expect(retryAfterDelayMs('1', scheduled, now)).toBe(scheduled);
  });

  it('never waits longer than twice the scheduled delay', () => {
    expect(retryAfterDelayMs('86400', scheduled, now)).toBe(600_000);
    expect(retryAfterDelayMs('99999999999999999999', scheduled, now)).toBe(600_000);
  });

  it('reads an HTTP-date in all three forms', () => {
    expect(retryAfterDelayMs('Thu, 01 Jan 2026 00:08:00 GMT', scheduled, now)).toBe(480_000);
    expect(retryAfterDelayMs('Thursday, 01-Jan-26 00:08:00 GMT', scheduled, now)).toBe(480_000);
    expect(retryAfterDelayMs('Thu Jan  1 00:08:00 2026', scheduled, new Date(now))).toBe(480_000);
    expect(retryAfterDelayMs('Thu, 01 Jan 2026 05:00:00 GMT', scheduled, now)).toBe(600_000);
    expect(retryAfterDelayMs('Wed, 31 Dec 2025 23:00:00 GMT', scheduled, now)).toBe(scheduled);
  });

  it('keeps the schedule when the header is missing or not a Retry-After value', () => {
    for (const header of [null, undefined, '', 'soon', '-5', '1.5', '5s', '2026-01-01T00:08:00Z', 'Thu, 01 Jan 2026']) {
      expect(retryAfterDelayMs(header, scheduled, now)).toBe(scheduled);
    }
  });
});
