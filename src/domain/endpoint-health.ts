import type { Endpoint, Prisma } from '../db/client.ts';
import { visible } from './access.ts';
import { requireApp } from './apps.ts';
import type { DeliveryHooks, DomainContext, SqlExecutor } from './context.ts';
import { badInput } from './errors.ts';
import { idFloorAt } from './ids.ts';
import { type FeedScope, recipientScope } from './live-feed.ts';

/**
 * Upper bounds (exclusive, ms) of the latency buckets of "EndpointStat"; the
 * last bucket holds everything from 60 s. Must equal the array in
 * dispatch_endpoint_stat_bucket (migration 20261206150000_endpoint_stats);
 * test/integration/endpoint-health.test.ts checks that they agree.
 */
export const LATENCY_BOUNDS_MS = [
  1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000, 7000, 10000, 15000,
  20000, 30000, 60000,
] as const;

/** Width of a bin of "EndpointStat": the finest bucket Endpoint.stats can give. */
export const STAT_BIN_SECONDS = 300;
export const STATS_BUCKETS = { FIVE_MINUTES: 300, HOUR: 3600, DAY: 86400 } as const;
export type StatsBucket = keyof typeof STATS_BUCKETS;
/** Most buckets one Endpoint.stats answers. */
export const MAX_STATS_BUCKETS = 1000;

export type HealthStatus = 'HEALTHY' | 'FAILING' | 'DISABLED';

type HealthOf = Pick<Endpoint, 'id' | 'disabled' | 'disabledAt' | 'disabledReason' | 'failingSince'>;

export interface EndpointHealth {
  /** The endpoint's id. */
  endpointId: string;
  status: HealthStatus;
  /** Start of the current run of failures (FAILING, and DISABLED after failing). */
  failingSince: Date | null;
  disabledAt: Date | null;
  disabledReason: string | null;
}

export interface EndpointLastError {
  attemptId: string;
  at: Date;
  responseStatusCode: number | null;
  error: string | null;
  errorKind: string | null;
}

/**
 * HEALTHY (nothing failed since the last success), FAILING (every attempt
 * since failingSince failed) or DISABLED, from the endpoint's row alone; the
 * last error and the next retry are read only when asked for
 * (endpointLastError, nextRetries).
 */
export function endpointHealth(endpoint: HealthOf): EndpointHealth {
  return {
    endpointId: endpoint.id,
    status: endpoint.disabled ? 'DISABLED' : endpoint.failingSince ? 'FAILING' : 'HEALTHY',
    failingSince: endpoint.failingSince,
    disabledAt: endpoint.disabledAt,
    disabledReason: endpoint.disabledReason,
  };
}

/**
 * The newest failed attempt of the current run of failures (none without
 * one): one index probe, walking the endpoint's attempts back from the
 * newest, which while failing are failures.
 */
export async function endpointLastError(
  sql: SqlExecutor,
  health: Pick<EndpointHealth, 'endpointId' | 'failingSince'>,
): Promise<EndpointLastError | null> {
  if (!health.failingSince) return null;
  // An attempt starts before it fails, by at most its timeout.
  const runStart = new Date(health.failingSince.getTime() - 10 * 60_000);
  const { rows } = await sql.query<EndpointLastError>(
    `SELECT id AS "attemptId", "createdAt" AS at, "responseStatusCode", error, "errorKind" FROM "Attempt"
     WHERE "endpointId" = $1 AND id >= $2 AND status = 'FAILED' ORDER BY id DESC LIMIT 1`,
    [health.endpointId, idFloorAt('Attempt', runStart)],
  );
  return rows[0] ?? null;
}

/**
 * For FAILING endpoints: when the oldest delivery of each waiting for a
 * retry is tried next, from the queue (one index probe per endpoint,
 * all in one statement); endpoints with none are absent.
 */
export async function nextRetries(
  hooks: Pick<DeliveryHooks, 'nextScheduledTries'>,
  endpointIds: string[],
): Promise<Map<string, Date>> {
  if (!hooks.nextScheduledTries || endpointIds.length === 0) return new Map();
  return hooks.nextScheduledTries(endpointIds);
}

export interface StatsBucketRow {
  start: Date;
  end: Date;
  succeeded: number;
  failed: number;
  total: number;
  /** succeeded / total, null when there were no attempts. */
  successRate: number | null;
  /** Estimated from the latency histogram (linear within a bucket); null without attempts that have a duration. */
  p50Ms: number | null;
  p95Ms: number | null;
}

export interface EndpointStats {
  since: Date;
  until: Date;
  bucket: StatsBucket;
  /** The whole range as one bucket. */
  summary: StatsBucketRow;
  buckets: StatsBucketRow[];
}

/**
 * Attempts of an endpoint in [since, until) by time bucket: counts by
 * outcome, success rate, p50 and p95 latency. Read from "EndpointStat"
 * (5-minute bins: since is rounded down, until up, to a bucket), so a
 * request costs the bins in its range, at most 288 a day per latency
 * bucket used, whatever the number of attempts. Buckets without attempts
 * are included, with zero counts.
 */
export async function endpointStats(
  sql: SqlExecutor,
  endpointId: string,
  args: { since: Date; until?: Date | null; bucket?: StatsBucket | null },
): Promise<EndpointStats> {
  const bucket = args.bucket ?? 'HOUR';
  const width = STATS_BUCKETS[bucket] * 1000;
  const until = args.until ?? new Date();
  if (Number.isNaN(args.since.getTime()) || Number.isNaN(until.getTime()))
    throw badInput('since and until must be valid times');
  if (args.since >= until) throw badInput('since must be before until');
  const first = Math.floor(args.since.getTime() / width) * width;
  const last = Math.ceil(until.getTime() / width) * width;
  const count = (last - first) / width;
  if (count > MAX_STATS_BUCKETS)
    throw badInput(`that range has ${count} buckets of ${bucket}; at most ${MAX_STATS_BUCKETS}: use a larger bucket`);
  const { rows } = await sql.query<{ start: number; latencyBucket: number; succeeded: number; failed: number }>(
    `SELECT (floor(extract(epoch FROM bin) * 1000 / $4) * $4)::float8 AS start, "latencyBucket",
            sum(succeeded)::int AS succeeded, sum(failed)::int AS failed
     FROM "EndpointStat"
     WHERE "endpointId" = $1 AND bin >= to_timestamp($2::float8 / 1000) AT TIME ZONE 'UTC'
       AND bin < to_timestamp($3::float8 / 1000) AT TIME ZONE 'UTC'
     GROUP BY 1, 2 ORDER BY 1, 2`,
    [endpointId, first, last, width],
  );
  const histograms = new Map<number, Histogram>();
  const summary = new Histogram();
  for (const row of rows) {
    let h = histograms.get(row.start);
    if (!h) {
      h = new Histogram();
      histograms.set(row.start, h);
    }
    h.add(row.latencyBucket, row.succeeded, row.failed);
    summary.add(row.latencyBucket, row.succeeded, row.failed);
  }
  const buckets: StatsBucketRow[] = [];
  for (let start = first; start < last; start += width) {
    buckets.push((histograms.get(start) ?? new Histogram()).row(new Date(start), new Date(start + width)));
  }
  return {
    since: new Date(first),
    until: new Date(last),
    bucket,
    summary: summary.row(new Date(first), new Date(last)),
    buckets,
  };
}

/** Counts of one bucket of time, by latency bucket. */
export class Histogram {
  succeeded = 0;
  failed = 0;
  /** Attempts per latency bucket (index into LATENCY_BOUNDS_MS, and one past it). */
  readonly latency = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);

  add(latencyBucket: number, succeeded: number, failed: number): void {
    this.succeeded += succeeded;
    this.failed += failed;
    if (latencyBucket >= 0 && latencyBucket < this.latency.length) this.latency[latencyBucket]! += succeeded + failed;
  }

  /** The latency at or below which a fraction `p` of attempts fall, interpolated within its bucket. */
  percentile(p: number): number | null {
    const total = this.latency.reduce((a, b) => a + b, 0);
    if (total === 0) return null;
    const rank = p * total;
    let below = 0;
    for (let i = 0; i < this.latency.length; i++) {
      const n = this.latency[i]!;
      if (n > 0 && below + n >= rank) {
        const lo = i === 0 ? 0 : LATENCY_BOUNDS_MS[i - 1]!;
        const hi = LATENCY_BOUNDS_MS[i] ?? lo * 2;
        return Math.round(lo + ((rank - below) / n) * (hi - lo));
      }
      below += n;
    }
    return null;
  }

  row(start: Date, end: Date): StatsBucketRow {
    const total = this.succeeded + this.failed;
    return {
      start,
      end,
      succeeded: this.succeeded,
      failed: this.failed,
      total,
      successRate: total ? this.succeeded / total : null,
      p50Ms: this.percentile(0.5),
      p95Ms: this.percentile(0.95),
    };
  }
}

/** Scope of `endpointHealthChanged`: the app must be visible (NOT_FOUND otherwise); a portal token sees its own endpoints only. */
export async function endpointHealthFeedScope(
  ctx: DomainContext,
  args: { appId: string; recipientUid?: string | null },
): Promise<FeedScope<Prisma.EndpointWhereInput>> {
  const app = await requireApp(ctx, args.appId);
  const recipient = await recipientScope(ctx, app.id, args.recipientUid);
  const where: Prisma.EndpointWhereInput[] = [visible.endpoint(ctx.actor)];
  if (recipient.pendingUid !== undefined) where.push({ recipient: { uid: recipient.pendingUid } });
  return { appId: app.id, recipientId: recipient.recipientId, where: { AND: where } };
}
