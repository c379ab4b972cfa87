import DataLoader from 'dataloader';
import type { DomainContext } from '../../domain/context.ts';
import {
  type EndpointHealth,
  type EndpointLastError,
  type EndpointStats,
  endpointHealth,
  endpointLastError,
  endpointStats,
  nextRetries,
  type StatsBucketRow,
} from '../../domain/endpoint-health.ts';
import { builder } from '../builder.ts';

/**
 * nextRetryAt of every FAILING endpoint a request (or one event of a
 * subscription) resolves in the same tick, read in one statement. No cache:
 * a subscription's context lives long, and each event must read afresh.
 */
const nextRetryLoaders = new WeakMap<DomainContext, DataLoader<string, Date | null>>();
function nextRetryLoader(domain: DomainContext): DataLoader<string, Date | null> {
  let loader = nextRetryLoaders.get(domain);
  if (!loader) {
    loader = new DataLoader(
      async (ids: readonly string[]) => {
        const found = await nextRetries(domain.hooks, [...ids]);
        return ids.map((id) => found.get(id) ?? null);
      },
      { cache: false },
    );
    nextRetryLoaders.set(domain, loader);
  }
  return loader;
}

const HealthStatusEnum = builder.enumType('EndpointHealthStatus', {
  values: {
    HEALTHY: { description: 'Nothing failed since its last success.' },
    FAILING: { description: 'Every attempt since failingSince failed.' },
    DISABLED: { description: 'Receives nothing until enabled (disabledReason says why).' },
  } as const,
});

const StatsBucketEnum = builder.enumType('EndpointStatsBucket', {
  values: ['FIVE_MINUTES', 'HOUR', 'DAY'] as const,
});

const LastErrorRef = builder.objectRef<EndpointLastError>('EndpointLastError').implement({
  description: 'The newest failed attempt of the current run of failures.',
  fields: (t) => ({
    attemptId: t.exposeID('attemptId'),
    at: t.expose('at', { type: 'DateTime' }),
    responseStatusCode: t.exposeInt('responseStatusCode', { nullable: true }),
    error: t.exposeString('error', { nullable: true }),
    errorKind: t.exposeString('errorKind', { nullable: true }),
  }),
});

const HealthRef = builder.objectRef<EndpointHealth>('EndpointHealth').implement({
  fields: (t) => ({
    status: t.field({ type: HealthStatusEnum, resolve: (h) => h.status }),
    failingSince: t.expose('failingSince', {
      type: 'DateTime',
      nullable: true,
      description: 'Start of the current run of failures: every attempt since failed.',
    }),
    disabledAt: t.expose('disabledAt', { type: 'DateTime', nullable: true }),
    disabledReason: t.exposeString('disabledReason', { nullable: true }),
    lastError: t.field({
      type: LastErrorRef,
      nullable: true,
      resolve: (h, _args, ctx) => endpointLastError(ctx.domain.pool, h),
    }),
    nextRetryAt: t.field({
      type: 'DateTime',
      nullable: true,
      description: 'While FAILING: when its oldest delivery waiting for a retry is tried next.',
      resolve: (h, _args, ctx) => (h.status === 'FAILING' ? nextRetryLoader(ctx.domain).load(h.endpointId) : null),
    }),
  }),
});

const StatsBucketRowRef = builder.objectRef<StatsBucketRow>('EndpointStatsBucketRow').implement({
  description: 'Attempts that started in [start, end).',
  fields: (t) => ({
    start: t.expose('start', { type: 'DateTime' }),
    end: t.expose('end', { type: 'DateTime' }),
    succeeded: t.exposeInt('succeeded'),
    failed: t.exposeInt('failed'),
    total: t.exposeInt('total'),
    successRate: t.exposeFloat('successRate', {
      nullable: true,
      description: 'succeeded / total; null without attempts.',
    }),
    p50Ms: t.exposeInt('p50Ms', {
      nullable: true,
      description: 'Median duration, estimated from a latency histogram (buckets about 1.5x apart).',
    }),
    p95Ms: t.exposeInt('p95Ms', { nullable: true, description: '95th percentile duration, estimated likewise.' }),
  }),
});

const StatsRef = builder.objectRef<EndpointStats>('EndpointStats').implement({
  fields: (t) => ({
    since: t.expose('since', { type: 'DateTime', description: 'The start of the first bucket.' }),
    until: t.expose('until', { type: 'DateTime', description: 'The end of the last bucket.' }),
    bucket: t.field({ type: StatsBucketEnum, resolve: (s) => s.bucket }),
    summary: t.field({ type: StatsBucketRowRef, resolve: (s) => s.summary }),
    buckets: t.field({ type: [StatsBucketRowRef], resolve: (s) => s.buckets }),
  }),
});

builder.prismaObjectFields('Endpoint', (t) => ({
  health: t.field({
    type: HealthRef,
    select: { id: true, disabled: true, disabledAt: true, disabledReason: true, failingSince: true },
    resolve: (endpoint) => endpointHealth(endpoint),
  }),
  stats: t.field({
    type: StatsRef,
    description:
      'Its attempts in [since, until) (until defaults to now) by bucket (default HOUR; at most 1000 buckets): counts by outcome, success rate, p50/p95 latency. ' +
      'Counted per 5 minutes as attempts finish, so since and until are rounded to buckets, and a request costs the same whatever the number of attempts.',
    args: {
      since: t.arg({ type: 'DateTime', required: true }),
      until: t.arg({ type: 'DateTime' }),
      bucket: t.arg({ type: StatsBucketEnum }),
    },
    select: { id: true },
    resolve: (endpoint, args, ctx) => endpointStats(ctx.domain.pool, endpoint.id, args),
  }),
}));
