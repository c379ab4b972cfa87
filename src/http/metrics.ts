import client from 'prom-client';

import { registry } from '../metrics.ts';

export const httpRequests = new client.Counter({
  name: 'dispatch_http_requests_total',
  help: 'HTTP requests served, by route and status code.',
  labelNames: ['route', 'status'] as const,
  registers: [registry],
});

export const httpDuration = new client.Histogram({
  name: 'dispatch_http_request_duration_seconds',
  help: 'Time to answer an HTTP request (to the first byte of a streamed response).',
  labelNames: ['route'] as const,
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});
