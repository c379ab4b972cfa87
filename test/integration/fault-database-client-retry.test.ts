import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchClient, type DispatchClient } from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createDeliveryApp } from '../support/delivery.ts';
import { type OwnPostgres, startOwnPostgres } from '../support/own-postgres.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';

/** Messages the backend sends, at RATE a second, across the outage. */
const MESSAGES = 100;
const RATE = 25;
/** How long PostgreSQL stays down. */
const OUTAGE_MS = 2_000;

describe('a backend sending through @dispatch/client while PostgreSQL restarts', () => {
  let postgres: OwnPostgres;
  let dispatch: DispatchProcess;
  let db: Database;
  let client: DispatchClient;

  beforeAll(async () => {
    // A PostgreSQL of this test's own, so stopping it touches no other test.
    postgres = await startOwnPostgres('client-retry-pg');
    dispatch = await spawnDispatch({ DATABASE_URL: postgres.url, DISPATCH_ROLE: 'api' });
    db = connectDatabase(postgres.url, { max: 2 });
    const apiKey = (await createApiKey(db.prisma, { workspaceName: 'Client retry' })).token;
    // The client as a backend has it: default retries.
    client = createDispatchClient({ url: dispatch.url, apiKey });
  }, 90_000);

  afterAll(async () => {
    await dispatch?.stop();
    await db?.close();
    await postgres?.remove();
  });

  it('stores all 100 messages exactly once and fails none, though PostgreSQL was down for 2 s', async () => {
    const appId = await createDeliveryApp(client);
    const sends: Promise<unknown>[] = [];
    const started: number[] = [];
    const failures: string[] = [];
    const durations: number[] = [];
    const sendOne = (sequence: number) => {
      const at = performance.now();
      started.push(Date.now());
      // No messageId: the client makes one and keeps it across its retries.
      const sent = client
        .sendMessage({ appId, recipientId: 'retry', eventType: 'invoice.paid', data: { sequence } })
        .then(
          () => void durations.push(performance.now() - at),
          (error: Error) => void failures.push(`${sequence}: ${error.message}`),
        );
      sends.push(sent);
    };

    let sequence = 0;
    const load = setInterval(() => {
      if (sequence < MESSAGES) sendOne(++sequence);
    }, 1000 / RATE);
    let stoppedAt = 0;
    let restartedAt = 0;
    let backAt = 0;
    try {
      // A fifth of the messages go out first, then PostgreSQL stops mid-stream.
      await expect.poll(() => sequence, { timeout: 10_000, interval: 20 }).toBeGreaterThanOrEqual(MESSAGES / 5);
      await postgres.stop();
      stoppedAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS));
      restartedAt = Date.now();
      await postgres.start();
      backAt = Date.now();
      await expect.poll(() => sequence, { timeout: 20_000, interval: 50 }).toBe(MESSAGES);
    } finally {
      clearInterval(load);
    }
    await Promise.all(sends);

    const duringOutage = started.filter((at) => at >= stoppedAt && at < restartedAt).length;
    console.info(
      `client retry: ${MESSAGES} sends, ${duringOutage} begun while PostgreSQL was down, ${failures.length} failed; ` +
        `slowest ${Math.round(Math.max(...durations))} ms; PostgreSQL stopped ${restartedAt - stoppedAt} ms, back ${backAt - restartedAt} ms after its restart began`,
    );
    // The outage was real for the client: sends began while nothing could store them.
    expect(duringOutage).toBeGreaterThanOrEqual(10);
    expect(failures).toEqual([]);
    const { rows } = await db.pool.query<{ total: number; distinct: number; ids: number }>(
      `SELECT count(*)::int AS total, count(DISTINCT data->>'sequence')::int AS distinct, count(DISTINCT uid)::int AS ids
       FROM "Message" WHERE "appId" = $1`,
      [appId],
    );
    expect(rows[0]).toEqual({ total: MESSAGES, distinct: MESSAGES, ids: MESSAGES });
  }, 120_000);
});
