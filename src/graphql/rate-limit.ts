/**
 * A token bucket per key: `perSecond` requests a second on average, bursts up
 * to twice that. In-process: with several API processes each allows the rate.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(private readonly perSecond: number) {}

  /** Whether a request of `key` may go now; 0 means unlimited. */
  take(key: string, now = Date.now()): boolean {
    if (this.perSecond <= 0) return true;
    const capacity = this.perSecond * 2;
    const bucket = this.buckets.get(key) ?? { tokens: capacity, at: now };
    bucket.tokens = Math.min(capacity, bucket.tokens + ((now - bucket.at) / 1000) * this.perSecond);
    bucket.at = now;
    if (this.buckets.size > 100_000) this.buckets.clear();
    this.buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}
