import pg from 'pg';
import { LIVE_CHANNEL } from '../domain/live-feed.ts';
import type { Logger } from '../logger.ts';
import type { AttemptEvent, EndpointEvent, LiveBus, MessageEvent } from './bus.ts';
import { liveEventsPublished, liveEventsReceived, livePublishFailures, liveReconnects } from './metrics.ts';

export { LIVE_CHANNEL };
/** application_name of the LISTEN connection, so operators (and tests) can find it in pg_stat_activity. */
export const LIVE_APPLICATION_NAME = 'dispatch-live';
/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; ours carry ids only. */
const MAX_PAYLOAD_BYTES = 7999;

type Wire =
  | ({ kind: 'attempt' } & AttemptEvent)
  | ({ kind: 'message' } & MessageEvent)
  | ({ kind: 'endpoint' } & EndpointEvent);

const ATTEMPT_STATUSES = new Set(['SENDING', 'SUCCEEDED', 'FAILED']);
const isId = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && value.length <= 200;

/** One event of a payload, or undefined when it is not ours (anyone may NOTIFY on the channel). */
function parseEvent(value: unknown): Wire | undefined {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const { kind, appId, recipientId, messageId } = value as Record<string, unknown>;
  if (kind === 'endpoint') {
    const { endpointId } = value as Record<string, unknown>;
    if (!isId(appId) || !isId(recipientId) || !isId(endpointId)) return undefined;
    return { kind, appId, recipientId, endpointId };
  }
  if (!isId(appId) || !isId(recipientId) || !isId(messageId)) return undefined;
  if (kind === 'message') return { kind, appId, recipientId, messageId };
  if (kind === 'attempt') {
    const { attemptId, endpointId, status } = value as Record<string, unknown>;
    if (!isId(attemptId) || !isId(endpointId) || typeof status !== 'string' || !ATTEMPT_STATUSES.has(status))
      return undefined;
    return { kind, attemptId, appId, recipientId, messageId, endpointId, status: status as AttemptEvent['status'] };
  }
  return undefined;
}

/** The events of a payload: an array of events (what this bus sends) or a single event. */
function parseWire(text: string): Wire[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return [];
  }
  const items = Array.isArray(value) ? value : [value];
  const events: Wire[] = [];
  for (const item of items) {
    const event = parseEvent(item);
    if (event) events.push(event);
  }
  return events;
}

export interface PgLiveBusOptions {
  /** The database; the bus opens one dedicated connection to it for LISTEN. */
  url: string;
  /** Where NOTIFY is sent from. */
  pool: pg.Pool;
  /** Whether this process has subscribers and so LISTENs (default true); a worker only publishes. */
  listen?: boolean;
  logger: Logger;
  channel?: string;
  /** Reconnect delays: doubling from minMs to maxMs, with jitter. */
  reconnect?: { minMs?: number; maxMs?: number };
  /** How often the LISTEN connection is checked, so a half-open TCP connection is noticed too. */
  healthCheckMs?: number;
}

export interface PgLiveBus extends LiveBus {
  /** Resolves once LISTEN is active (again); at once when it is. Never resolves on a bus that does not listen. */
  listening(): Promise<void>;
  /** In-process listeners now (one per open subscription). */
  listenerCount(): number;
  /** Listeners ever registered in this process (a subscription is live once its listener is). */
  listenersAdded(): number;
  /** Resolves once `listenersAdded()` reaches `total`. */
  whenListenersAdded(total: number): Promise<void>;
}

/**
 * The live-feed bus over PostgreSQL LISTEN/NOTIFY. Every process publishes
 * with `pg_notify` on its pool; every process that has subscribers keeps one
 * dedicated connection LISTENing and fans each notification out to its
 * in-process listeners. Its own notifications come back through that same
 * connection, so local and remote events take one path and keep their order.
 *
 * Best effort by design: publishing never throws (a failure is logged and
 * counted; the delivery that published is not affected), and events sent
 * while the LISTEN connection is down are not seen by this process. The
 * connection comes back by itself after a database restart; losing it tells
 * the interruption listeners, so subscribers learn they may have missed events.
 */
export function createPgLiveBus(options: PgLiveBusOptions): PgLiveBus {
  const { pool, logger } = options;
  const channel = options.channel ?? LIVE_CHANNEL;
  const minDelay = options.reconnect?.minMs ?? 100;
  const maxDelay = options.reconnect?.maxMs ?? 5_000;
  const healthCheckMs = options.healthCheckMs ?? 10_000;

  const attemptListeners = new Set<(event: AttemptEvent) => void>();
  const messageListeners = new Set<(event: MessageEvent) => void>();
  const endpointListeners = new Set<(event: EndpointEvent) => void>();
  const interruptionListeners = new Set<(reason: string) => void>();
  let current: pg.Client | undefined;
  let closed = false;
  let failures = 0;
  let everConnected = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let healthTimer: NodeJS.Timeout | undefined;
  let waiters: (() => void)[] = [];
  let added = 0;
  let addedWaiters: { total: number; resolve: () => void }[] = [];
  const listenerAdded = () => {
    added++;
    for (const w of addedWaiters) if (added >= w.total) w.resolve();
    addedWaiters = addedWaiters.filter((w) => added < w.total);
  };
  const dead = new WeakSet<pg.Client>();

  function fanOut<E>(listeners: Set<(event: E) => void>, event: E) {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (error) {
        logger.error('live listener failed', error);
      }
    }
  }

  function receive(text: string | undefined) {
    // Nobody here to hand events to: reading them would be work for nothing
    // (a process with workers gets every attempt's events back).
    if (attemptListeners.size === 0 && messageListeners.size === 0 && endpointListeners.size === 0) return;
    const wires = text === undefined ? [] : parseWire(text);
    if (wires.length === 0) {
      logger.debug(`ignored a notification on ${channel} that is not a live event`);
      return;
    }
    for (const wire of wires) {
      liveEventsReceived.inc({ kind: wire.kind });
      if (wire.kind === 'attempt') {
        const { kind: _, ...event } = wire;
        fanOut(attemptListeners, event);
      } else if (wire.kind === 'endpoint') {
        const { kind: _, ...event } = wire;
        fanOut(endpointListeners, event);
      } else {
        const { kind: _, ...event } = wire;
        fanOut(messageListeners, event);
      }
    }
  }

  function lost(client: pg.Client, error?: unknown) {
    if (dead.has(client)) return;
    dead.add(client);
    const wasListening = current === client;
    if (wasListening) current = undefined;
    clearInterval(healthTimer);
    // Ending a connection whose server is gone may itself error; that is expected.
    client.end().catch(() => undefined);
    if (closed) return;
    const delay = Math.min(maxDelay, minDelay * 2 ** failures) * (0.5 + Math.random() / 2);
    failures++;
    const reason = (error as Error | undefined)?.message ?? 'closed';
    if (wasListening || failures === 1) logger.warn(`live feed: LISTEN connection lost (${reason}); reconnecting`);
    // Whatever was published from the moment it broke until LISTEN is back never reaches us.
    if (wasListening) fanOut(interruptionListeners, reason);
    retryTimer = setTimeout(connect, delay);
    retryTimer.unref();
  }

  function checkHealth(client: pg.Client) {
    const timeout = new Promise<never>((_, reject) => {
      setTimeout(() => reject(new Error('health check timed out')), Math.min(5_000, healthCheckMs)).unref();
    });
    Promise.race([client.query('SELECT 1'), timeout]).catch((error) => lost(client, error));
  }

  async function connect() {
    if (closed) return;
    const client = new pg.Client({
      connectionString: options.url,
      application_name: LIVE_APPLICATION_NAME,
      keepAlive: true,
    });
    // Registered before connect: a connection dropping at any time must never become an uncaught error.
    client.on('error', (error) => lost(client, error));
    client.on('end', () => lost(client));
    client.on('notification', (message) => {
      if (message.channel === channel) receive(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
    } catch (error) {
      lost(client, error);
      return;
    }
    if (closed || dead.has(client)) {
      client.end().catch(() => undefined);
      return;
    }
    current = client;
    if (everConnected) {
      liveReconnects.inc();
      logger.info('live feed: LISTEN connection re-established');
    }
    everConnected = true;
    failures = 0;
    healthTimer = setInterval(() => checkHealth(client), healthCheckMs);
    healthTimer.unref();
    const ready = waiters;
    waiters = [];
    for (const resolve of ready) resolve();
  }

  // Publishing coalesces, like a group commit: events published while a NOTIFY
  // is in flight wait for it and then go out together, as one JSON array per
  // notification (split to stay under the payload limit). One round trip and
  // one write transaction then carries many events instead of one each, and
  // an idle bus still sends a lone event at once. One NOTIFY at a time, in
  // publish order, so the events keep their order.
  interface Pending {
    wire: Wire;
    text: string;
    bytes: number;
    resolve: () => void;
  }
  const queue: Pending[] = [];
  let flushing: Promise<void> | undefined;

  /** The next payload: as many queued events as fit under the limit, in order. */
  function takeChunk(): Pending[] {
    let bytes = 2;
    let count = 0;
    while (count < queue.length) {
      const size = queue[count]!.bytes + (count > 0 ? 1 : 0);
      if (count > 0 && bytes + size > MAX_PAYLOAD_BYTES) break;
      bytes += size;
      count++;
    }
    return queue.splice(0, count);
  }

  async function flush() {
    while (queue.length > 0) {
      const chunk = takeChunk();
      try {
        // One notification per statement: PostgreSQL folds identical payloads sent in one transaction.
        await pool.query('SELECT pg_notify($1, $2)', [channel, `[${chunk.map((p) => p.text).join(',')}]`]);
        for (const p of chunk) liveEventsPublished.inc({ kind: p.wire.kind });
      } catch (error) {
        for (const p of chunk) livePublishFailures.inc({ kind: p.wire.kind });
        logger.warn(`live feed: could not publish ${chunk.length} event(s): ${(error as Error).message}`);
      }
      for (const p of chunk) p.resolve();
    }
    flushing = undefined;
  }

  /** Resolves once the event was sent (or failed to be: the feed is best effort). */
  function publish(wire: Wire): Promise<void> {
    const text = JSON.stringify(wire);
    const bytes = Buffer.byteLength(text);
    // Bracket and event together must fit, so every event fits in a payload of its own.
    if (bytes + 2 > MAX_PAYLOAD_BYTES) {
      livePublishFailures.inc({ kind: wire.kind });
      logger.error(`live feed: an event of ${bytes} bytes is over the NOTIFY limit; not sent`);
      return Promise.resolve();
    }
    const sent = new Promise<void>((resolve) => queue.push({ wire, text, bytes, resolve }));
    flushing ??= flush();
    return sent;
  }

  if (options.listen !== false) void connect();

  return {
    get isListening() {
      return current !== undefined;
    },
    listening() {
      if (current) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
    publishAttempt: (event) =>
      publish({
        kind: 'attempt',
        attemptId: event.attemptId,
        appId: event.appId,
        recipientId: event.recipientId,
        messageId: event.messageId,
        endpointId: event.endpointId,
        status: event.status,
      }),
    publishMessage: (event) =>
      publish({ kind: 'message', messageId: event.messageId, appId: event.appId, recipientId: event.recipientId }),
    listenerCount: () => attemptListeners.size + messageListeners.size + endpointListeners.size,
    listenersAdded: () => added,
    whenListenersAdded(total) {
      if (added >= total) return Promise.resolve();
      return new Promise((resolve) => addedWaiters.push({ total, resolve }));
    },
    subscribeAttempts(listener) {
      attemptListeners.add(listener);
      listenerAdded();
      return () => attemptListeners.delete(listener);
    },
    subscribeMessages(listener) {
      messageListeners.add(listener);
      listenerAdded();
      return () => messageListeners.delete(listener);
    },
    subscribeEndpoints(listener) {
      endpointListeners.add(listener);
      listenerAdded();
      return () => endpointListeners.delete(listener);
    },
    subscribeInterruptions(listener) {
      interruptionListeners.add(listener);
      return () => interruptionListeners.delete(listener);
    },
    async close() {
      // Events already published still go out.
      await flushing;
      closed = true;
      clearTimeout(retryTimer);
      clearInterval(healthTimer);
      attemptListeners.clear();
      messageListeners.clear();
      endpointListeners.clear();
      interruptionListeners.clear();
      const client = current;
      current = undefined;
      for (const resolve of waiters) resolve();
      waiters = [];
      if (client) {
        dead.add(client);
        await client.end().catch(() => undefined);
      }
    },
  };
}
