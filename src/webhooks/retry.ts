/**
 * The one retry schedule of Dispatch: how long to wait after a failed attempt,
 * with jitter, and how a receiver's Retry-After bends it.
 */

/**
 * Seconds to wait after each failed try: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
 * 10 h. With the first try that makes 8 tries in all.
 */
export const DEFAULT_RETRY_SCHEDULE: readonly number[] = Object.freeze([5, 300, 1800, 7200, 18000, 36000, 36000]);

/** Each delay is moved by up to this fraction either way, so retries of a burst spread out. */
export const RETRY_JITTER = 0.2;

/** Longest single delay an app may configure: 7 days. */
export const MAX_RETRY_DELAY_SECONDS = 7 * 24 * 60 * 60;

/** Most retries an app may configure (so at most 21 tries). */
export const MAX_RETRY_SCHEDULE_LENGTH = 20;

/** Tries a delivery gets under `schedule`: the first one plus one per delay. */
export function maxAttempts(schedule: readonly number[]): number {
  return schedule.length + 1;
}

export interface NextRetryInput {
  /** Delays in seconds, e.g. DEFAULT_RETRY_SCHEDULE or an app's override. */
  schedule: readonly number[];
  /** Tries made so far, the one that just failed included (1 after the first try). */
  attemptNumber: number;
  /** Source of randomness in [0, 1), for tests; Math.random by default. */
  random?: () => number;
}

/**
 * Milliseconds to wait before the next try, ±20 % jitter, or null when the
 * schedule is exhausted and the delivery has failed for good.
 */
export function nextRetryDelayMs({ schedule, attemptNumber, random = Math.random }: NextRetryInput): number | null {
  if (!Number.isInteger(attemptNumber) || attemptNumber < 1) {
    throw new RangeError(`attemptNumber counts tries made so far, from 1; got ${attemptNumber}`);
  }
  const seconds = schedule[attemptNumber - 1];
  if (seconds === undefined) return null;
  const factor = 1 + RETRY_JITTER * (2 * random() - 1);
  return Math.round(seconds * 1000 * factor);
}

// HTTP-date in its three forms (RFC 9110 §5.6.7): IMF-fixdate, obsolete
// RFC 850, and asctime (which carries no zone but is UTC).
const IMF_FIXDATE = /^[a-z]{3}, \d{2} [a-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/i;
const RFC_850 = /^[a-z]{6,9}, \d{2}-[a-z]{3}-\d{2} \d{2}:\d{2}:\d{2} GMT$/i;
const ASCTIME = /^[a-z]{3} [a-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/i;

/** Milliseconds a Retry-After value asks for, or undefined when it is not one. */
export function parseRetryAfterMs(header: string, now: number): number | undefined {
  const value = header.trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  let date = Number.NaN;
  if (IMF_FIXDATE.test(value) || RFC_850.test(value)) date = Date.parse(value);
  else if (ASCTIME.test(value)) date = Date.parse(`${value} GMT`);
  return Number.isNaN(date) ? undefined : date - now;
}

/**
 * The delay before the next try after a 429 or 503: the receiver's
 * Retry-After (delta seconds or HTTP-date), clamped to [scheduledMs,
 * 2 × scheduledMs] so a receiver can slow Dispatch down a little but neither
 * hurry it nor park a delivery forever. A missing or invalid header leaves
 * the scheduled delay.
 *
 * Only call this when the schedule has a next delay (nextRetryDelayMs is not
 * null): Retry-After never adds tries.
 */
export function retryAfterDelayMs(
  header: string | null | undefined,
  scheduledMs: number,
  now: number | Date = Date.now(),
): number {
  if (!header) return scheduledMs;
  const requested = parseRetryAfterMs(header, typeof now === 'number' ? now : now.getTime());
  if (requested === undefined) return scheduledMs;
  return Math.min(Math.max(requested, scheduledMs), 2 * scheduledMs);
}

/**
 * Why `schedule` cannot be an app's retry schedule, or null when it can.
 * An empty schedule is valid: one try, no retries.
 */
export function validateRetrySchedule(schedule: readonly number[]): string | null {
  if (!Array.isArray(schedule)) return 'retrySchedule must be a list of delays in seconds';
  if (schedule.length > MAX_RETRY_SCHEDULE_LENGTH) {
    return `retrySchedule may have at most ${MAX_RETRY_SCHEDULE_LENGTH} delays, got ${schedule.length}`;
  }
  for (const [index, seconds] of schedule.entries()) {
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_RETRY_DELAY_SECONDS) {
      return `retrySchedule[${index}] must be a whole number of seconds from 1 to ${MAX_RETRY_DELAY_SECONDS} (7 days), got ${JSON.stringify(seconds)}`;
    }
  }
  return null;
}

/** An app's retry schedule: its own delays, or the default when it has none. */
export function scheduleOf(retrySchedule: readonly number[]): readonly number[] {
  return retrySchedule.length ? retrySchedule : DEFAULT_RETRY_SCHEDULE;
}
