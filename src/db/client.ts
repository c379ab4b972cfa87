import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/prisma/client.ts';

export type * from './generated/prisma/client.ts';
export { Prisma, PrismaClient } from './generated/prisma/client.ts';

export interface Database {
  prisma: PrismaClient;
  /** The pool behind Prisma, for the few statements Prisma cannot express. */
  pool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

export function connectDatabase(
  url: string,
  options: { max?: number; onQuery?: (sql: string) => void } = {},
): Database {
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 20 });
  // An idle client losing its connection (database restart) must not crash the process.
  pool.on('error', () => undefined);
  // Nor one that is checked out: pg-pool takes its idle listener off while a
  // transaction holds the client, and an unheard 'error' would end the
  // process. The statement in progress rejects with the same error, and the
  // pool discards the client on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  const adapter = new PrismaPg(pool);
  const prisma = new PrismaClient({
    adapter,
    log: options.onQuery ? [{ emit: 'event', level: 'query' }] : [],
  });
  if (options.onQuery) {
    const onQuery = options.onQuery;
    (prisma as unknown as { $on(event: 'query', cb: (e: { query: string }) => void): void }).$on('query', (e) =>
      onQuery(e.query),
    );
  }
  return {
    prisma,
    pool,
    url,
    async close() {
      await prisma.$disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}

/** Error codes meaning PostgreSQL cannot be reached or is restarting: Prisma's, Node's socket errors, SQLSTATEs. */
const UNAVAILABLE_CODES = new Set([
  'P1001', // can't reach the database server
  'P1002', // the server timed out
  'P1008', // socket timeout
  'P1017', // the server closed the connection
  'P2024', // timed out waiting for a pooled connection
  'P2028', // transaction API error: its connection was lost (terminated, restarted) or it timed out under load
  'P2037', // too many connections
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '53300', // too_many_connections
]);

interface DriverError {
  code?: unknown;
  originalCode?: unknown;
  message?: unknown;
  cause?: unknown;
  meta?: { driverAdapterError?: unknown };
}

/** Whether `test` holds for an error or anything it wraps: its causes and Prisma's driver-adapter error. */
function anyInChain(error: unknown, test: (codes: unknown[], message: string) => boolean, depth = 0): boolean {
  if (depth > 5 || typeof error !== 'object' || error === null) return false;
  const e = error as DriverError;
  if (test([e.code, e.originalCode], typeof e.message === 'string' ? e.message : '')) return true;
  return anyInChain(e.cause, test, depth + 1) || anyInChain(e.meta?.driverAdapterError, test, depth + 1);
}

/**
 * Whether an error means the database is unavailable (down, restarting,
 * unreachable) rather than that the statement was wrong: such an error is
 * worth retrying later.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  return anyInChain(
    error,
    (codes, message) =>
      // SQLSTATE class 08: connection exception.
      codes.some((code) => typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) ||
      /Connection terminated|not queryable|timeout exceeded when trying to connect/.test(message),
  );
}

/**
 * Whether PostgreSQL refused text it cannot store: the NUL character (U+0000)
 * in a text column (22021) or a JSON string (22P05). That is the client's
 * input, not a fault of ours.
 */
export function isUnstorableText(error: unknown): boolean {
  return anyInChain(
    error,
    (codes, message) =>
      codes.some((code) => code === '22021' || code === '22P05') ||
      /invalid byte sequence for encoding "UTF8": 0x00|unsupported Unicode escape sequence/.test(message),
  );
}
