import type pg from 'pg';
import { DispatchError } from '../domain/errors.ts';
import type { Logger } from '../logger.ts';
import { comparePositions, encodeCursor, maxPosition, type Position } from './cursor.ts';
import { liveLogReads } from './metrics.ts';

/**
 * The live feed's event log, LiveEvent: triggers on "Attempt" and "Message"
 * write one row per attempt started or ended and per new message, in the
 * transaction of the change (migration live_event_log). Each row carries the
 * writing transaction's id (xid) and a sequence number (seq); events are
 * ordered by (xid, seq).
 *
 * Why not the sequence alone: a bigserial number is given at insert, so a
 * transaction that took 7 may commit after one that took 8; a reader past 8
 * would never see 7. Here a row is only read once every transaction with a
 * lower xid has ended (xid < pg_snapshot_xmin of the reader's snapshot), so
 * once a position is read past, nothing can ever appear below it: a cursor
 * resumes with no gap and no duplicate, and every reader sees one order.
 * The price: an event waits for every older writing transaction (of the
 * whole server) to end, so a long-running write transaction delays the feed
 * until it ends.
 */
export type LogKind = 'attempt' | 'message';

export interface LogEvent extends Position {
  kind: LogKind;
  /** The attempt's or message's id. */
  rowId: string;
  appId: string;
  recipientId: string;
  messageId: string;
  endpointId?: string;
  /** An attempt's status at this event. */
  status?: 'SENDING' | 'SUCCEEDED' | 'FAILED';
  cursor: string;
}

/** What a subscriber's scope narrows log reads to (internal ids). */
export interface LogFilter {
  kind: LogKind;
  appId: string;
  recipientId?: string;
  messageId?: string;
  endpointId?: string;
}

interface Row {
  xid: string;
  seq: string;
  kind: LogKind;
  rowId: string;
  appId: string;
  recipientId: string;
  messageId: string;
  endpointId: string | null;
  status: LogEvent['status'] | null;
}

const COLUMNS = `e.xid::text AS xid, e.seq::text AS seq, e.kind, e."rowId", e."appId", e."recipientId", e."messageId", e."endpointId", e.status`;

function toEvent(row: Row): LogEvent {
  const position = { xid: BigInt(row.xid), seq: BigInt(row.seq) };
  const event: LogEvent = {
    ...position,
    kind: row.kind,
    rowId: row.rowId,
    appId: row.appId,
    recipientId: row.recipientId,
    messageId: row.messageId,
    cursor: encodeCursor(position),
  };
  if (row.endpointId !== null) event.endpointId = row.endpointId;
  if (row.status !== null) event.status = row.status;
  return event;
}

/** The snapshot's xmin as a position: every event below it is settled, and none will ever join them. */
const XMIN = `pg_snapshot_xmin(pg_current_snapshot())::text::bigint`;

/** A snapshot of which transactions had committed (pg_current_snapshot). */
export interface CommitSnapshot {
  xmin: bigint;
  xmax: bigint;
  /** In progress when it was taken. */
  running: Set<bigint>;
}

/** Which transactions have committed now. */
export async function readCommitSnapshot(pool: pg.Pool): Promise<CommitSnapshot> {
  const { rows } = await pool.query<{ xmin: string; xmax: string; running: string[] }>(
    `SELECT pg_snapshot_xmin(s)::text AS xmin, pg_snapshot_xmax(s)::text AS xmax,
            ARRAY(SELECT x::text FROM pg_snapshot_xip(s) AS x) AS running
     FROM pg_current_snapshot() AS s`,
  );
  const row = rows[0]!;
  return { xmin: BigInt(row.xmin), xmax: BigInt(row.xmax), running: new Set(row.running.map(BigInt)) };
}

/** Whether the transaction `xid` had committed (or ended) when `snapshot` was taken. */
export function endedBefore(xid: bigint, snapshot: CommitSnapshot): boolean {
  return xid < snapshot.xmin || (xid < snapshot.xmax && !snapshot.running.has(xid));
}

/** The head of the log now: the position just past every settled event. */
export async function readHead(pool: pg.Pool): Promise<Position> {
  const { rows } = await pool.query<{ xmin: string }>(`SELECT ${XMIN}::text AS xmin`);
  return { xid: BigInt(rows[0]!.xmin), seq: 0n };
}

/**
 * The settled events after `after`, in order, at most `limit`; `head` is the
 * position reached when fewer came (every settled event read), and
 * `pending` whether unsettled events wait behind it.
 */
export async function readSettled(
  pool: pg.Pool,
  after: Position,
  limit: number,
): Promise<{ events: LogEvent[]; head: Position; pending: boolean }> {
  const { rows } = await pool.query<Row & { xmin: string; pending: boolean }>({
    name: 'dispatch_live_log_tail',
    text: `WITH s AS (SELECT ${XMIN} AS xmin)
           SELECT s.xmin::text AS xmin, EXISTS (SELECT 1 FROM "LiveEvent" p WHERE p.xid >= s.xmin) AS pending, e.*
           FROM s LEFT JOIN LATERAL (
             SELECT ${COLUMNS} FROM "LiveEvent" e
             WHERE (e.xid, e.seq) > ($1::bigint, $2::bigint) AND e.xid < s.xmin
             ORDER BY e.xid, e.seq LIMIT $3
           ) e ON true`,
    values: [after.xid.toString(), after.seq.toString(), limit],
  });
  liveLogReads.inc({ reader: 'tail' });
  const first = rows[0]!;
  const events = first.xid === null ? [] : rows.map(toEvent);
  let head = events.length ? events.at(-1)! : after;
  if (events.length < limit) head = maxPosition(head, { xid: BigInt(first.xmin), seq: 0n });
  return { events, head: { xid: head.xid, seq: head.seq }, pending: first.pending };
}

/**
 * The events of `filter` in (after, upTo], in order, at most `limit`.
 * `upTo` must be settled (a position the tail reader has reached).
 */
export async function readRange(
  pool: pg.Pool,
  after: Position,
  upTo: Position,
  filter: LogFilter,
  limit: number,
): Promise<LogEvent[]> {
  const values: unknown[] = [
    after.xid.toString(),
    after.seq.toString(),
    upTo.xid.toString(),
    upTo.seq.toString(),
    filter.kind,
    filter.appId,
    limit,
  ];
  let where = '';
  for (const column of ['recipientId', 'messageId', 'endpointId'] as const) {
    const value = filter[column];
    if (value === undefined) continue;
    values.push(value);
    where += ` AND e."${column}" = $${values.length}`;
  }
  const { rows } = await pool.query<Row>(
    `SELECT ${COLUMNS} FROM "LiveEvent" e
     WHERE (e.xid, e.seq) > ($1::bigint, $2::bigint) AND (e.xid, e.seq) <= ($3::bigint, $4::bigint)
       AND e.kind = $5 AND e."appId" = $6${where}
     ORDER BY e.xid, e.seq LIMIT $7`,
    values,
  );
  liveLogReads.inc({ reader: 'catch_up' });
  return rows.map(toEvent);
}

/** A cursor older than what retention kept: CURSOR_EXPIRED. */
export async function checkNotExpired(pool: pg.Pool, after: Position): Promise<void> {
  const { rows } = await pool.query<{ xid: string; seq: string }>(
    `SELECT xid::text, seq::text FROM "LiveEventHorizon" WHERE id = 1`,
  );
  const horizon = rows[0];
  if (horizon && comparePositions(after, { xid: BigInt(horizon.xid), seq: BigInt(horizon.seq) }) < 0) {
    throw new DispatchError(
      'CURSOR_EXPIRED',
      'after: this cursor is older than what the live feed keeps (retention has pruned the events after it); re-read with queries, then subscribe without after',
    );
  }
}

export interface LogTail {
  /** Resolves once the tail has a position (at once after the first time); rejects when the database cannot be read. */
  ready(): Promise<void>;
  /** The position every event up to which has been handed to the listeners. */
  readonly position: Position;
  /** Listeners get every settled event after the position they subscribed at, in order, synchronously. */
  subscribe(listener: (event: LogEvent) => void): () => void;
  /** Something was written (a bus notification): read soon. Calls within one tick make one read. */
  wake(): void;
  /**
   * The events in (after, upTo] that `accept` takes, at most `limit`, from
   * the tail's memory of its recent events (the same objects it handed its
   * listeners, so subscribers catching up share loaded rows), or undefined
   * when that memory does not reach back to `after`.
   */
  recent(after: Position, upTo: Position, accept: (event: LogEvent) => boolean, limit: number): LogEvent[] | undefined;
  close(): void;
}

export interface LogTailOptions {
  pool: pg.Pool;
  logger?: Logger;
  /** Read at least this often with no notification (default 1000 ms): notifications are a wake-up, not the data. */
  pollMs?: number;
  /** Events per read (default 1000). */
  pageSize?: number;
  /** Recent events kept for subscribers catching up (default 20,000: ids only, a few MB). */
  recentSize?: number;
}

/**
 * The one reader of the log in an API process: reads the settled events
 * past its position when woken (each subscription wakes it on the bus's
 * notifications of its kind: their contents are not used) and every
 * pollMs regardless, so a lost notification or a LISTEN connection down
 * only delays events), and hands them to its listeners, the subscriptions,
 * in order. A failed read is tried again from the same position, so a
 * database restart delays events but loses none.
 */
/** How soon the tail reads again while events it has seen written are not yet settled. */
const PENDING_RETRY_MS = 10;

export function createLogTail(options: LogTailOptions): LogTail {
  const { pool, logger } = options;
  const pollMs = options.pollMs ?? 1000;
  const pageSize = options.pageSize ?? 1000;
  const recentSize = options.recentSize ?? 20_000;
  /** The latest events handed out, oldest first; every event after `recentFrom` is in it. */
  let recentEvents: LogEvent[] = [];
  let recentFrom: Position | undefined;
  const listeners = new Set<(event: LogEvent) => void>();
  let position: Position | undefined;
  let starting: Promise<void> | undefined;
  let reading = false;
  let again = false;
  let closed = false;
  /** No listeners: the tail stops reading; the next ready() moves it to the head (nobody waits for what came meanwhile). */
  let idle = true;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;

  const wake = () => void read();
  let wakeQueued = false;

  function schedule(ms: number) {
    clearTimeout(timer);
    if (closed || idle) return;
    timer = setTimeout(wake, ms);
    timer.unref();
  }

  async function read(): Promise<void> {
    if (closed || idle || position === undefined) return;
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    let next = pollMs;
    try {
      do {
        again = false;
        for (;;) {
          const page = await readSettled(pool, position, pageSize);
          for (const event of page.events) {
            // Monotonic, even if ready() moved the position on while this read was out.
            if (comparePositions(event, position) <= 0) continue;
            position = event;
            recentEvents.push(event);
            for (const listener of listeners) {
              try {
                listener(event);
              } catch (error) {
                logger?.error('live feed: a log listener failed', error);
              }
            }
          }
          position = maxPosition(position, page.head);
          if (recentEvents.length > recentSize * 1.5) {
            const dropped = recentEvents.length - recentSize;
            const last = recentEvents[dropped - 1]!;
            recentFrom = { xid: last.xid, seq: last.seq };
            recentEvents = recentEvents.slice(dropped);
          }
          if (page.events.length < pageSize || idle || closed) {
            if (page.pending) {
              // Under steady writes some event is nearly always unsettled: backing off (10 ms doubling
              // to 200 ms, as before) put the live load test's p50 at 1.3 s; a steady 10 ms gave 0.5 s.
              next = PENDING_RETRY_MS;
            }
            break;
          }
        }
      } while (again && !closed);
      failures = 0;
    } catch (error) {
      failures++;
      next = Math.min(2000, 100 * 2 ** failures);
      if (failures === 1)
        logger?.warn(`live feed: reading the event log failed (${(error as Error).message}); retrying`);
    } finally {
      reading = false;
    }
    schedule(next);
  }

  return {
    ready() {
      if (position !== undefined && !idle) return Promise.resolve();
      starting ??= readHead(pool).then(
        (head) => {
          starting = undefined;
          if (idle || position === undefined) {
            position = maxPosition(position ?? head, head);
            // A jump: what the memory holds no longer runs up to the position.
            recentEvents = [];
            recentFrom = position;
          }
          idle = false;
          schedule(0);
        },
        (error) => {
          starting = undefined;
          throw error;
        },
      );
      return starting;
    },
    get position() {
      if (position === undefined) throw new Error('the log tail is not ready');
      return position;
    },
    subscribe(listener) {
      if (position === undefined) throw new Error('the log tail is not ready');
      const own = (event: LogEvent) => listener(event);
      listeners.add(own);
      if (idle) {
        // Went idle since ready(): carry on from where it was, so the new listener misses nothing.
        idle = false;
        schedule(0);
      }
      return () => {
        listeners.delete(own);
        if (listeners.size === 0) {
          idle = true;
          clearTimeout(timer);
        }
      };
    },
    recent(after, upTo, accept, limit) {
      if (recentFrom === undefined || comparePositions(after, recentFrom) < 0) return undefined;
      // The first event after `after`: binary search, the memory is in order.
      let low = 0;
      let high = recentEvents.length;
      while (low < high) {
        const mid = (low + high) >>> 1;
        if (comparePositions(recentEvents[mid]!, after) <= 0) low = mid + 1;
        else high = mid;
      }
      const found: LogEvent[] = [];
      for (let i = low; i < recentEvents.length && found.length < limit; i++) {
        const event = recentEvents[i]!;
        if (comparePositions(event, upTo) > 0) break;
        if (accept(event)) found.push(event);
      }
      return found;
    },
    wake() {
      if (wakeQueued) return;
      wakeQueued = true;
      setImmediate(() => {
        wakeQueued = false;
        void read();
      });
    },
    close() {
      closed = true;
      clearTimeout(timer);
      listeners.clear();
    },
  };
}
