import client from 'prom-client';
import { registry } from '../metrics.ts';

/** Series of the live feed, on the process's one registry. */
export const liveSubscribers = new client.Gauge({
  name: 'dispatch_live_subscribers',
  help: 'Live-feed subscriptions open in this process, by field.',
  labelNames: ['field'] as const,
  registers: [registry],
});

export const liveEventsPublished = new client.Counter({
  name: 'dispatch_live_events_published_total',
  help: 'Live events this process published (NOTIFY sent), by kind.',
  labelNames: ['kind'] as const,
  registers: [registry],
});

export const livePublishFailures = new client.Counter({
  name: 'dispatch_live_publish_failures_total',
  help: 'Live events this process failed to publish (database unreachable); the feed is best effort, the work that published them is not affected.',
  labelNames: ['kind'] as const,
  registers: [registry],
});

export const liveEventsReceived = new client.Counter({
  name: 'dispatch_live_events_received_total',
  help: 'Live events this process received from PostgreSQL (LISTEN) while it had subscribers to hand them to, by kind.',
  labelNames: ['kind'] as const,
  registers: [registry],
});

export const liveEventsDelivered = new client.Counter({
  name: 'dispatch_live_events_delivered_total',
  help: 'Live events handed to subscribers, by field.',
  labelNames: ['field'] as const,
  registers: [registry],
});

export const liveEventsDropped = new client.Counter({
  name: 'dispatch_live_events_dropped_total',
  help: 'Live events not delivered from memory: overflow (the subscriber fell too far behind: it was cut off, or, on the feeds with cursors, the events are read again from the log) or load_failed (the database could not be read; on the feeds with cursors, tried again).',
  labelNames: ['field', 'reason'] as const,
  registers: [registry],
});

export const liveReconnects = new client.Counter({
  name: 'dispatch_live_reconnects_total',
  help: 'Times the LISTEN connection was lost and re-established.',
  registers: [registry],
});

export const liveSubscriptionsInterrupted = new client.Counter({
  name: 'dispatch_live_subscriptions_interrupted_total',
  help: 'Subscriptions ended with FEED_INTERRUPTED, by field: open when the LISTEN connection was lost, or made while it was down.',
  labelNames: ['field'] as const,
  registers: [registry],
});

export const liveLogReads = new client.Counter({
  name: 'dispatch_live_log_reads_total',
  help: "Reads of the live feed's event log: tail (this process's one reader following the log) or catch_up (a subscriber reading what it missed: a resumed cursor, or events it fell too far behind on).",
  labelNames: ['reader'] as const,
  registers: [registry],
});
