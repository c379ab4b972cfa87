import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchClient, type DispatchClient, DispatchClientError } from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { liveSubscribers, subscribeWs, wsClient } from '../support/live.ts';
import { type OwnPostgres, startOwnPostgres } from '../support/own-postgres.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

type AttemptData = { attemptUpdated: { status: string; message: { messageId: string } } };
const ATTEMPTS = `subscription($appId: ID!) { attemptUpdated(appId: $appId) { status message { messageId } } }`;

/** Messages per second the load generator offers, before, during and after the outage. */
const RATE = 40;
/** How long PostgreSQL stays down. */
const OUTAGE_MS = 3_000;
/** A sendMessage during the outage must answer within this (the client gives up at twice it). */
const ANSWER_BOUND_MS = 5_000;

interface Outcome {
  messageId: string;
  ok: boolean;
  code?: string | undefined;
  status?: number | undefined;
  message?: string;
  ms: number;
  at: number;
}

describe('PostgreSQL restarted during a run', () => {
  let postgres: OwnPostgres;
  let dispatch: DispatchProcess;
  let db: Database;
  let receiver: Receiver;
  let client: DispatchClient;
  let apiKey: string;

  beforeAll(async () => {
    // A PostgreSQL of this test's own, so stopping it touches no other test.
    postgres = await startOwnPostgres('restart-pg');
    dispatch = await spawnDispatch({
      DATABASE_URL: postgres.url,
      DISPATCH_ROLE: 'all',
      DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
      // Lost jobs (a try whose recording failed with the database) are looked for every second.
      DISPATCH_QUEUE_SUPERVISE_SECONDS: '1',
    });
    db = connectDatabase(postgres.url, { max: 2 });
    apiKey = (await createApiKey(db.prisma, { workspaceName: 'Restart' })).token;
    // No retries: this test measures how the server answers during the outage (test/integration/client-retry.test.ts retries through it).
    client = createDispatchClient({ url: dispatch.url, apiKey, timeoutMs: ANSWER_BOUND_MS * 2, retry: false });
    receiver = await startReceiver();
  }, 90_000);

  afterAll(async () => {
    await dispatch?.stop();
    await receiver?.close();
    await db?.close();
    await postgres?.remove();
  });

  /** Times the api process's LISTEN connection was re-established, from its /metrics. */
  const liveReconnects = async () =>
    Number(
      /^dispatch_live_reconnects_total (\d+)/m.exec(await (await fetch(`${dispatch.url}/metrics`)).text())?.[1] ?? 0,
    );
  const probe = async (route: string) =>
    (await fetch(`${dispatch.url}${route}`, { signal: AbortSignal.timeout(2_000) })).status;

  it('recovers by itself: readiness goes false then true, sends fail fast while down, and no accepted message is lost', async () => {
    const appId = await createDeliveryApp(client, { retrySchedule: [1], attemptTimeoutMs: 2_000 });
    await createEndpoint(client, { appId, recipientId: 'restart', url: receiver.url });
    const socket = wsClient(dispatch.url, apiKey);
    const feed = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
    await expect.poll(() => liveSubscribers(dispatch.url, 'attemptUpdated'), { timeout: 5_000 }).toBe(1);

    // The load generator: RATE sends a second, each on its own, recording how each ended.
    const outcomes: Outcome[] = [];
    const inFlight = new Set<Promise<void>>();
    let sequence = 0;
    const sendOne = () => {
      const messageId = `restart-${++sequence}`;
      const started = performance.now();
      const done = send(client, { appId, recipientId: 'restart', messageId, data: { sequence } }).then(
        () => void outcomes.push({ messageId, ok: true, ms: performance.now() - started, at: Date.now() }),
        (error: unknown) =>
          void outcomes.push({
            messageId,
            ok: false,
            code: error instanceof DispatchClientError ? error.code : (error as Error).name,
            status: error instanceof DispatchClientError ? error.status : undefined,
            message: (error as Error).message,
            ms: performance.now() - started,
            at: Date.now(),
          }),
      );
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
    };
    const load = setInterval(sendOne, 1000 / RATE);

    try {
      // Running: messages are being sent and delivered.
      await eventually(async () => (receiver.received.length >= 20 ? true : undefined), { timeoutMs: 15_000 });

      const reconnectsBefore = await liveReconnects();
      const stopAt = Date.now();
      await postgres.stop();
      const stoppedAt = Date.now();
      const readyzDownMs = await timeUntil(async () => (await probe('/readyz')) === 503);
      expect(await probe('/healthz')).toBe(200);
      expect(dispatch.child.exitCode).toBeNull();
      // Sends that began once PostgreSQL was gone.
      const refusedDuringOutage = () => outcomes.filter((o) => !o.ok && o.at - o.ms > stoppedAt);
      await eventually(async () => (refusedDuringOutage().length >= 10 ? true : undefined), { timeoutMs: 10_000 });
      // The outage lasts OUTAGE_MS, whatever the waits above took.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, stopAt + OUTAGE_MS - Date.now())));
      expect(await probe('/healthz')).toBe(200);
      expect(await probe('/readyz')).toBe(503);

      const restartAt = Date.now();
      await postgres.start(); // on the same data and port
      const startedAt = Date.now();
      const readyzUpMs = await timeUntil(async () => (await probe('/readyz')) === 200, 20_000);

      // Sends succeed again, and keep coming for another second.
      const recoveredFrom = Date.now();
      await eventually(async () => (outcomes.some((o) => o.ok && o.at - o.ms > recoveredFrom) ? true : undefined), {
        timeoutMs: 10_000,
      });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      clearInterval(load);
      await Promise.all([...inFlight]);

      const refused = refusedDuringOutage();
      const accepted = outcomes.filter((o) => o.ok).map((o) => o.messageId);
      // Every sendMessage that began during the outage answered an error, within the bound.
      expect(refused.length).toBeGreaterThanOrEqual(10);
      expect(Math.max(...refused.map((o) => o.ms))).toBeLessThan(ANSWER_BOUND_MS);
      const show = (o: Outcome) => `${o.status} ${o.code}: ${o.message}`;
      const codes = [...new Set(refused.map(show))];
      // Sends caught by the stop itself (begun before it finished) may fail too, and the same way.
      const allFailures = [...new Set(outcomes.filter((o) => !o.ok).map(show))];
      expect(
        refused.every((o) => o.code === 'SERVICE_UNAVAILABLE' && o.status === 503),
        codes.join('\n'),
      ).toBe(true);

      // None lost: every accepted message reaches the receiver, through the same engine (no restart).
      // A try whose outcome could not be recorded while the database was down
      // is taken up again once its heartbeat lapses (10 s), so this can take that long.
      const deliveryStatuses = async () =>
        (
          await db.pool.query<{ status: string; n: number }>(
            `SELECT d.status, count(*)::int AS n FROM "Delivery" d JOIN "Message" m ON m.id = d."messageId"
             WHERE m.uid = ANY($1) GROUP BY d.status`,
            [accepted],
          )
        ).rows;
      const deliveredWithin = await timeUntil(async () => {
        const seen = new Set(receiver.received.map((r) => String(r.headers['webhook-id'])));
        const statuses = await deliveryStatuses();
        return accepted.every((id) => seen.has(id)) && statuses.length === 1 && statuses[0]!.status === 'SUCCEEDED';
      }, 45_000);
      const counts = new Map<string, number>();
      for (const r of receiver.received)
        counts.set(String(r.headers['webhook-id']), (counts.get(String(r.headers['webhook-id'])) ?? 0) + 1);
      const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);
      expect(await deliveryStatuses()).toEqual([{ status: 'SUCCEEDED', n: accepted.length }]);
      const seen = new Set(receiver.received.map((r) => String(r.headers['webhook-id'])));
      expect(accepted.filter((id) => !seen.has(id))).toEqual([]);
      expect(dispatch.child.exitCode).toBeNull();

      // The feed open all along carries on: the attempts made while the database was down reach it from
      // the event log once it is back (docs/live-feed.md), with no error and without being ended.
      const succeededOnFeed = () =>
        new Set(
          feed.data
            .filter((d) => d.attemptUpdated.status === 'SUCCEEDED')
            .map((d) => d.attemptUpdated.message.messageId),
        );
      await feed.until(
        () => accepted.every((id) => succeededOnFeed().has(id)),
        20_000,
        'every accepted message SUCCEEDED on the feed open all along',
      );
      expect(feed.results.flatMap((r) => r.errors ?? [])).toEqual([]);
      expect(feed.ended).toBeUndefined();
      // The live bus listens again: a message sent now shows up on a feed subscribed again on the same socket.
      await expect.poll(liveReconnects, { timeout: 10_000, interval: 200 }).toBeGreaterThan(reconnectsBefore);
      feed.unsubscribe();
      await expect.poll(() => liveSubscribers(dispatch.url, 'attemptUpdated'), { timeout: 5_000 }).toBe(0);
      const again = subscribeWs<AttemptData>(socket, ATTEMPTS, { appId });
      await expect.poll(() => liveSubscribers(dispatch.url, 'attemptUpdated'), { timeout: 5_000 }).toBe(1);
      const marker = 'restart-live-marker';
      const markerSentAt = performance.now();
      await send(client, { appId, recipientId: 'restart', messageId: marker });
      await again.until(
        (f) =>
          f.data.some((d) => d.attemptUpdated.message.messageId === marker && d.attemptUpdated.status === 'SUCCEEDED'),
        10_000,
        'the marker attempt on the live feed',
      );
      const markerMs = Math.round(performance.now() - markerSentAt);
      again.unsubscribe();
      await socket.dispose();

      console.info(
        `database restart: ${outcomes.length} sends, ${accepted.length} accepted, ${refused.length} refused during the outage ` +
          `(${codes.join(' | ')}; every failure: ${allFailures.join(' | ')}; slowest ${Math.round(Math.max(...refused.map((o) => o.ms)))} ms); ` +
          `stop took ${stoppedAt - stopAt} ms, /readyz 503 after ${readyzDownMs} ms, PostgreSQL back ${startedAt - restartAt} ms after restart began, ` +
          `/readyz 200 ${readyzUpMs} ms later; all accepted delivered ${deliveredWithin} ms after that; ${duplicates} duplicate deliveries; ` +
          `a message sent afterwards was on the live feed as SUCCEEDED ${markerMs} ms after sending`,
      );
    } catch (error) {
      // What the Dispatch process said (a crash shows here) is the first thing to read.
      console.error(`Dispatch log (last 4000 characters):\n${dispatch.log().slice(-4000)}`);
      throw error;
    } finally {
      clearInterval(load);
    }
  }, 120_000);
});

/** Milliseconds until `check` holds (polled every 50 ms); fails after timeoutMs. */
async function timeUntil(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const started = Date.now();
  await eventually(async () => ((await check().catch(() => false)) ? true : undefined), { timeoutMs, intervalMs: 50 });
  return Date.now() - started;
}
