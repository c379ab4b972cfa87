import { badInput } from '../domain/errors.ts';

/**
 * A position in the live feed's event log (LiveEvent): the writing
 * transaction's id, then the event's order within the log. Events are
 * ordered by (xid, seq); a position is only ever handed out once every
 * transaction with a lower xid has ended, so nothing can appear below it
 * later (see log.ts).
 */
export interface Position {
  xid: bigint;
  seq: bigint;
}

const MAX = (1n << 63n) - 1n;
const PREFIX = 'lf1:';

export function comparePositions(a: Position, b: Position): number {
  if (a.xid !== b.xid) return a.xid < b.xid ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

export const maxPosition = (a: Position, b: Position): Position => (comparePositions(a, b) >= 0 ? a : b);

/** The opaque cursor of a position: base64url of `lf1:<xid>:<seq>`. */
export function encodeCursor(position: Position): string {
  return Buffer.from(`${PREFIX}${position.xid}:${position.seq}`).toString('base64url');
}

/** A cursor back to its position; anything that is not one of ours is BAD_USER_INPUT. */
export function decodeCursor(cursor: string): Position {
  const invalid = () => badInput('after: not a live-feed cursor (use the cursor field of an event you received)');
  if (cursor.length === 0 || cursor.length > 100 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  const text = Buffer.from(cursor, 'base64url').toString('latin1');
  const match = /^lf1:(0|[1-9][0-9]{0,18}):(0|[1-9][0-9]{0,18})$/.exec(text);
  if (!match) throw invalid();
  const xid = BigInt(match[1]!);
  const seq = BigInt(match[2]!);
  if (xid > MAX || seq > MAX) throw invalid();
  return { xid, seq };
}
