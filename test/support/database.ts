import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/client.ts';

const TEMPLATE_DATABASE = 'dispatch_template';

/** The URL of a database on the test server named `name`. */
export function databaseUrl(name: string): string {
  const url = new URL(inject('adminDatabaseUrl'));
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * A fresh, migrated database of its own (a clone of the migrated template).
 * `empty: true` gives a database with no tables at all.
 */
export async function createTestDatabase(
  options: { empty?: boolean } = {},
): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const name = `test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
  await admin.connect();
  try {
    await admin.query(
      options.empty ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} TEMPLATE ${TEMPLATE_DATABASE}`,
    );
  } finally {
    await admin.end();
  }
  return {
    name,
    url: databaseUrl(name),
    async drop() {
      const client = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

/** A migrated database with a connected Prisma client, dropped by `close()`. */
export async function openTestDatabase(
  options: { onQuery?: (sql: string) => void } = {},
): Promise<Database & { name: string }> {
  const created = await createTestDatabase();
  const db = connectDatabase(created.url, { max: 10, onQuery: options.onQuery });
  return {
    ...db,
    name: created.name,
    async close() {
      await db.close();
      await created.drop();
    },
  };
}
