import type pg from 'pg';
import type { PrismaClient } from '../db/client.ts';
import type { Actor } from './actor.ts';

/** Runs SQL on one connection: inside a transaction, every statement goes through it. */
export interface SqlExecutor {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  /**
   * A named (prepared) statement: each connection parses and plans it once.
   * For hot statements, where planning costs PostgreSQL as much as running
   * (docs/benchmarks.md). Name columns rather than `*`, so a column added by
   * a migration does not invalidate the cached plan's result type.
   */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(statement: {
    name: string;
    text: string;
    values?: unknown[];
  }): Promise<pg.QueryResult<R>>;
}

/** A delivery just created, as the queue needs it. */
export interface NewDelivery {
  id: string;
  messageId: string;
  endpointId: string;
  appId: string;
  recipientId: string;
  /** A scheduled message's deliverAt, still ahead: its first try waits for it. */
  deliverAt?: Date;
  /** The W3C traceparent of the request that sent its message (tracing on): its tries continue that trace. */
  traceparent?: string | undefined;
}

/**
 * Where the delivery engine plugs into the domain. `deliveriesCreated` runs
 * inside the transaction that stores deliveries (sendMessage's group commit,
 * a resend), so jobs and rows commit together or not at all. Only the queue
 * (src/delivery/queue.ts) knows how a try is queued.
 */
export interface DeliveryHooks {
  deliveriesCreated(sql: SqlExecutor, deliveries: NewDelivery[], options: { manual: boolean }): Promise<void>;
  /** After the commit of a transaction that created deliveries: wake the workers. */
  deliveriesCommitted?(): void;
  /** Resend every failed delivery of an endpoint in a window, as background work. */
  recoverRequested?(sql: SqlExecutor, request: { endpointId: string; since: Date; until: Date | null }): Promise<void>;
  /** Queue a bulk replay's background work (replayMessages). */
  replayRequested?(sql: SqlExecutor, replayId: string): Promise<void>;
  /** Delete the not yet started first tries of these scheduled deliveries (cancelScheduledMessage); returns how many. */
  scheduledCanceled?(sql: SqlExecutor, deliveryIds: string[]): Promise<number>;
  /** When each endpoint's oldest delivery waiting for a retry is tried next (endpoints with none are absent). */
  nextScheduledTries?(endpointIds: string[]): Promise<Map<string, Date>>;
}

/**
 * Facts the domain announces once they are committed (the live feed listens).
 * Best effort: announcing never fails or delays the operation.
 */
export interface DomainEvents {
  messageCreated(message: { messageId: string; appId: string; recipientId: string }): void;
}

export interface DomainSettings {
  maxPayloadBytes: number;
  publicUrl: string;
  /** CIDRs endpoint URLs may name despite the outbound-safety rule. */
  allowNetworks: string[];
}

export interface DomainContext {
  prisma: PrismaClient;
  pool: pg.Pool;
  actor: Actor;
  settings: DomainSettings;
  hooks: DeliveryHooks;
  events?: DomainEvents;
}

/**
 * The start of a transaction whose statements are planned for their
 * parameters on every call (see inTransaction), in BEGIN's round trip.
 */
const BEGIN_CUSTOM = 'BEGIN; SET LOCAL plan_cache_mode = force_custom_plan';

/** inTransaction's option for the hot paths. */
export const CUSTOM_PLANS = { customPlans: true } as const;

/**
 * Runs `work` in a transaction on one pooled connection.
 *
 * `customPlans`: the delivery path's named statements (claiming, starting
 * and settling tries, pg-boss's fetch and deleteJob) are parsed once per
 * connection but planned for their parameters on every call. Left to
 * itself, PostgreSQL switches a named statement to a generic plan after
 * five calls when that plan looks no dearer, and keeps it: made while
 * "Attempt" and "Delivery" were small (a new database, or statistics not
 * yet refreshed by autovacuum), it scanned them whole as they grew: 20 to
 * 60 ms a settle instead of 1 to 4 (docs/benchmarks.md, round four).
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (sql: SqlExecutor) => Promise<T>,
  options: { customPlans?: boolean } = {},
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(options.customPlans ? BEGIN_CUSTOM : 'BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
