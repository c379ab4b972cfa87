import { describe, expect, it } from 'vitest';
import { Histogram, LATENCY_BOUNDS_MS } from '../../src/domain/endpoint-health.ts';

const bucketOf = (ms: number) => LATENCY_BOUNDS_MS.filter((b) => b <= ms).length;

describe('latency percentiles from the histogram', () => {
  it('are null without attempts that have a duration', () => {
    const h = new Histogram();
    h.add(-1, 0, 3);
    expect(h.row(new Date(0), new Date(1))).toMatchObject({ total: 3, failed: 3, successRate: 0, p50Ms: null });
  });

  it('fall within the bucket of the true percentile', () => {
    const durations = Array.from({ length: 1000 }, (_, i) => 5 + ((i * 37) % 400));
    const h = new Histogram();
    for (const d of durations) h.add(bucketOf(d), 1, 0);
    const sorted = [...durations].sort((a, b) => a - b);
    for (const p of [0.5, 0.95]) {
      const exact = sorted[Math.ceil(p * sorted.length) - 1]!;
      const i = bucketOf(exact);
      const estimate = h.percentile(p)!;
      expect(estimate).toBeGreaterThanOrEqual(LATENCY_BOUNDS_MS[i - 1]!);
      expect(estimate).toBeLessThanOrEqual(LATENCY_BOUNDS_MS[i]!);
    }
  });

  it('counts the last bucket (60 s and more) up to twice its bound', () => {
    const h = new Histogram();
    h.add(LATENCY_BOUNDS_MS.length, 0, 2);
    expect(h.percentile(0.5)).toBe(90_000);
  });
});
