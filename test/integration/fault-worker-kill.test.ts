import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type DispatchProcess, startWorkerProcess } from '../support/process.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

const MESSAGES = 500;
const RECIPIENTS = 4;
/** The worker is killed once the receiver has this many requests: well into the run. */
const KILL_AFTER = 150;

describe('a worker process killed with SIGKILL during a 500-message run', () => {
  let t: TestDispatch;
  let receiver: Receiver;
  const workers: DispatchProcess[] = [];

  const startWorker = () => startWorkerProcess(t.dispatch.db.url, workers);

  beforeAll(async () => {
    // The API in this process takes the messages; worker processes send them.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    // Each answer takes a little while, so tries are in flight when the worker dies.
    receiver = await startReceiver([], { status: 200, body: 'ok', delayMs: 30 });
  });
  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await receiver?.close();
    await t?.stop();
  });

  it('delivers every message at least once, and duplicates only what was in flight when it died', async () => {
    const appId = await createDeliveryApp(t.client, { retrySchedule: [1], attemptTimeoutMs: 5_000 });
    for (let r = 0; r < RECIPIENTS; r++)
      await createEndpoint(t.client, { appId, recipientId: `kill-${r}`, url: receiver.url });

    // Eight senders at a time; messages queue up while the worker starts, and keep coming while it runs and after it dies.
    const ids: string[] = [];
    let next = 0;
    const sending = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < MESSAGES) {
          const i = next++;
          ids.push((await send(t.client, { appId, recipientId: `kill-${i % RECIPIENTS}`, data: { i } })).messageId);
        }
      }),
    );

    const first = await startWorker();
    await receiver.nth(KILL_AFTER);
    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));
    const killedAt = Date.now();
    const receivedAtKill = receiver.received.length;
    // What the dead worker left: tries it started (Attempt SENDING) and never recorded.
    const { rows: leftSending } = await t.dispatch.db.pool.query<{ id: string }>(
      `SELECT id FROM "Attempt" WHERE status = 'SENDING'`,
    );

    await startWorker();
    await sending;
    expect(ids).toHaveLength(MESSAGES);

    const pool = t.dispatch.db.pool;
    const finished = await eventually(
      async () => {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "Delivery" WHERE status = 'SUCCEEDED'`,
        );
        return rows[0]!.n === MESSAGES ? Date.now() : undefined;
      },
      { timeoutMs: 45_000, intervalMs: 100 },
    );

    // Every message reached the receiver, with its own webhook-id.
    const counts = new Map<string, number>();
    for (const r of receiver.received) {
      const id = String(r.headers['webhook-id']);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([...ids].sort());
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const duplicates = [...counts.values()].reduce((sum, n) => sum + n - 1, 0);

    // The tries in flight at the kill were closed as worker_lost; every other try succeeded.
    const { rows: lost } = await pool.query<{ id: string; uid: string }>(
      `SELECT a.id, m.uid FROM "Attempt" a JOIN "Message" m ON m.id = a."messageId"
       WHERE a.status = 'FAILED' AND a."errorKind" = 'worker_lost'`,
    );
    // (A try whose start was committing at the kill may be closed too, so the left-SENDING set is a subset.)
    expect(leftSending.length).toBeGreaterThan(0);
    expect(lost.map((a) => a.id)).toEqual(expect.arrayContaining(leftSending.map((a) => a.id)));
    const { rows: attempts } = await pool.query<{ status: string; errorKind: string | null; n: number }>(
      `SELECT status, "errorKind", count(*)::int AS n FROM "Attempt" GROUP BY 1, 2 ORDER BY 1::text, 2`,
    );
    expect(attempts).toEqual([
      { status: 'FAILED', errorKind: 'worker_lost', n: lost.length },
      { status: 'SUCCEEDED', errorKind: null, n: MESSAGES },
    ]);
    // A duplicate is a try that reached the receiver but died before it was recorded: one of those.
    expect(duplicates).toBeLessThanOrEqual(lost.length);
    const lostMessages = new Set(lost.map((a) => a.uid));
    expect(duplicated.filter((id) => !lostMessages.has(id))).toEqual([]);

    console.info(
      `worker kill: ${MESSAGES} messages, killed after ${receivedAtKill} requests; ${leftSending.length} attempts left SENDING at the kill, ` +
        `${lost.length} closed as worker_lost; ${duplicates} duplicate deliveries (${duplicated.length} messages); ${receiver.received.length} requests in all; ` +
        `all delivered ${finished - killedAt} ms after the kill`,
    );
  }, 90_000);
});
