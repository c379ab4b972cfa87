import client from 'prom-client';
import { registry } from '../metrics.ts';

/** Series of the delivery engine, on the process's one registry. */
export const attemptsTotal = new client.Counter({
  name: 'dispatch_delivery_attempts_total',
  help: 'Delivery attempts finished by this process, by outcome (succeeded, or the error kind) and trigger.',
  labelNames: ['outcome', 'trigger'] as const,
  registers: [registry],
});

export const attemptDuration = new client.Histogram({
  name: 'dispatch_delivery_attempt_duration_seconds',
  help: 'Time of one delivery attempt: connecting, sending and reading the response.',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60],
  registers: [registry],
});

export const firstAttemptLatency = new client.Histogram({
  name: 'dispatch_delivery_first_attempt_latency_seconds',
  help: 'From a delivery being stored (sendMessage) to its first attempt starting.',
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

export const attemptsInFlight = new client.Gauge({
  name: 'dispatch_delivery_attempts_in_flight',
  help: 'Delivery jobs this process is working on now.',
  registers: [registry],
});

export const endpointsDisabled = new client.Counter({
  name: 'dispatch_delivery_endpoints_disabled_total',
  help: 'Endpoints the engine disabled, by reason (gone: HTTP 410; failing: failed every attempt too long).',
  labelNames: ['reason'] as const,
  registers: [registry],
});
