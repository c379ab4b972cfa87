import {
  type EndpointHealth,
  type EndpointStats,
  endpointHealth,
  endpointStats,
  type StatsBucketRow,
} from '../../domain/endpoint-health.ts';
import { builder } from '../builder.ts';

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

const LastErrorRef = builder.objectRef<NonNullable<EndpointHealth['lastError']>>('EndpointLastError').implement({
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
    lastError: t.field({ type: LastErrorRef, nullable: true, resolve: (h) => h.lastError }),
    nextRetryAt: t.expose('nextRetryAt', {
      type: 'DateTime',
      nullable: true,
      description: 'While FAILING: when its oldest delivery waiting for a retry is tried next.',
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
    select: { id: true, appId: true, disabled: true, disabledAt: true, disabledReason: true, failingSince: true },
    resolve: (endpoint, _args, ctx) => endpointHealth(ctx.domain.pool, endpoint),
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
