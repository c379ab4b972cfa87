import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/prisma/client.ts';

export { PrismaClient, Prisma } from './generated/prisma/client.ts';
export type * from './generated/prisma/client.ts';

export interface Database {
  prisma: PrismaClient;
  /** The pool behind Prisma, for the few statements Prisma cannot express. */
  pool: pg.Pool;
  url: string;
  close(): Promise<void>;
}

export function connectDatabase(url: string, options: { max?: number; onQuery?: (sql: string) => void } = {}): Database {
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
    (prisma as unknown as { $on(event: 'query', cb: (e: { query: string }) => void): void }).$on('query', (e) => onQuery(e.query));
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

/**
 * Whether an error means the database is unavailable (down, restarting,
 * unreachable) rather than that the statement was wrong: such an error is
 * worth retrying later. Looks through causes and Prisma's driver-adapter error.
 */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (depth > 5 || typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; originalCode?: unknown; message?: unknown; cause?: unknown; meta?: { driverAdapterError?: unknown } };
  for (const code of [e.code, e.originalCode]) {
    // SQLSTATE class 08: connection exception.
    if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  }
  if (typeof e.message === 'string' && /Connection terminated|not queryable|timeout exceeded when trying to connect/.test(e.message)) return true;
  return isDatabaseUnavailable(e.cause, depth + 1) || isDatabaseUnavailable(e.meta?.driverAdapterError, depth + 1);
}

/**
 * Whether PostgreSQL refused text it cannot store: the NUL character (U+0000)
 * in a text column (22021) or a JSON string (22P05). That is the client's
 * input, not a fault of ours. Found through pg's and Prisma's wrappers alike.
 */
export function isUnstorableText(error: unknown, depth = 0): boolean {
  if (depth > 5 || typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; originalCode?: unknown; message?: unknown; cause?: unknown; meta?: { driverAdapterError?: unknown } };
  for (const code of [e.code, e.originalCode]) {
    if (code === '22021' || code === '22P05') return true;
  }
  if (typeof e.message === 'string' && /invalid byte sequence for encoding "UTF8": 0x00|unsupported Unicode escape sequence/.test(e.message)) return true;
  return isUnstorableText(e.cause, depth + 1) || isUnstorableText(e.meta?.driverAdapterError, depth + 1);
}
