/**
 * The rules of an endpoint's delivery controls, pure: its rate limit (tries
 * started per second across every worker) and FIFO ordering (one delivery in
 * flight at a time, in the order of their messages). The worker applies them
 * in src/delivery/controls.ts.
 */

/** The highest rateLimit an endpoint may have (tries per second). */
export const MAX_RATE_LIMIT = 1000;

/**
 * A rate limit of N allows N tries to start in any window of one second
 * and a margin (DISPATCH_RATE_LIMIT_MARGIN_MS, 200 ms by default): a try
 * reaches the receiver a little after it is granted (the claim commits, the
 * request goes out), and not always equally soon, so without a margin a
 * receiver counting arrivals in 1-second windows could see more than N. The
 * cost: at most N tries per 1.2 s while a backlog waits, about 17 % under N.
 */
export const RATE_WINDOW_MS = 1000;

/** A 429's Retry-After pauses a rate-limited endpoint at most this long. */
export const MAX_PAUSE_MS = 60 * 60 * 1000;

export interface RatePlanInput {
  /** Start times (epoch ms) of tries granted before, any order. */
  sent: readonly number[];
  /** Now, epoch ms, on the clock `sent` was written with. */
  now: number;
  /** Tries per window. */
  limit: number;
  /** Tries that want to start now. */
  want: number;
  /** The window: RATE_WINDOW_MS and the margin. */
  windowMs: number;
  /** Epoch ms until which the endpoint is paused (a 429's Retry-After), if any. */
  pausedUntil?: number | null;
}

export interface RatePlan {
  /** How many of the tries that want to start may start now (the first ones). */
  granted: number;
  /** The log to keep: the grants still inside the window, these included, oldest first. */
  sent: number[];
  /**
   * For each try not granted, in order, when to ask again (epoch ms): when a
   * place in the window frees for it, if no other try takes it first. Hints
   * only: the try is checked again then.
   */
  retryAt: number[];
}

/**
 * A sliding log: a try may start when fewer than `limit` tries started in
 * the last `windowMs`. The log never holds more than `limit` times, so
 * it stays small; with no limit reached, every try that wants to is granted
 * at once (bursts of up to `limit`).
 */
export function planRate({ sent, now, limit, want, windowMs, pausedUntil }: RatePlanInput): RatePlan {
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer; got ${limit}`);
  const recent = sent.filter((t) => t > now - windowMs).sort((a, b) => a - b);
  if (pausedUntil != null && pausedUntil > now) {
    // Paused: nothing starts; afterwards the window starts afresh.
    return {
      granted: 0,
      sent: recent.slice(-limit),
      retryAt: Array.from({ length: want }, (_, k) => pausedUntil + windowMs * Math.floor(k / limit)),
    };
  }
  const granted = Math.max(0, Math.min(want, limit - recent.length));
  const log = [...recent, ...Array.from({ length: granted }, () => now)].slice(-limit);
  const retryAt: number[] = [];
  // The window is full when some are not granted: the k-th waiting try gets
  // the place the (k mod limit)-th oldest grant frees, k / limit windows on.
  for (let k = 0; k < want - granted; k++) {
    retryAt.push(log[k % limit]! + windowMs * (1 + Math.floor(k / limit)));
  }
  return { granted, sent: log, retryAt };
}

/** How long a 429's Retry-After (milliseconds asked for) pauses a rate-limited endpoint, or null for no pause. */
export function pauseMs(retryAfterMs: number | undefined): number | null {
  if (retryAfterMs === undefined || !Number.isFinite(retryAfterMs) || retryAfterMs <= 0) return null;
  return Math.min(retryAfterMs, MAX_PAUSE_MS);
}

export type FifoTurn = { go: true } | { go: false; heldBy: string };

/**
 * Whether a delivery of a FIFO endpoint may be sent now. `first` is the
 * endpoint's first unfinished delivery (PENDING or SENDING) at or after its
 * FIFO cursor, by id (ids sort by creation time). The delivery goes when
 * nothing unfinished comes before it, else it is held behind the first that
 * does (a delivery in flight is unfinished, so this also keeps one in
 * flight at a time). A delivery before the cursor (its message committed
 * late) is the earliest there is: it goes.
 */
export function fifoTurn(candidate: string, first: string | null): FifoTurn {
  if (first === null || first >= candidate) return { go: true };
  return { go: false, heldBy: first };
}

/** The FIFO cursor after a claim saw `first` from it and `candidate`: the earliest unfinished one it knows. */
export function fifoCursor(first: string | null, candidate: string): string {
  return first !== null && first < candidate ? first : candidate;
}
