import type { SqlExecutor } from './context.ts';
import { badInput } from './errors.ts';
import { newId } from './ids.ts';

/** Operator-chosen ids (recipient ids, message ids): visible ASCII, no spaces, so they are safe in headers and URLs. */
const EXTERNAL_ID = /^[\x21-\x7e]{1,256}$/;

export function checkExternalId(value: string, what: string): void {
  if (!EXTERNAL_ID.test(value)) throw badInput(`${what} must be 1 to 256 visible ASCII characters without spaces`);
}

/** Creates the recipient on first use; race-safe. Returns its internal id. */
export async function ensureRecipient(
  sql: SqlExecutor,
  appId: string,
  uid: string,
): Promise<{ id: string; uid: string; createdAt: Date; appId: string }> {
  const { rows } = await sql.query<{ id: string; uid: string; createdAt: Date; appId: string }>(
    `INSERT INTO "Recipient" (id, "appId", uid) VALUES ($1, $2, $3)
     ON CONFLICT ("appId", uid) DO UPDATE SET uid = EXCLUDED.uid
     RETURNING id, uid, "createdAt", "appId"`,
    [newId('Recipient'), appId, uid],
  );
  return rows[0]!;
}
