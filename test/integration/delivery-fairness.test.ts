import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { type DeliveryEngine, startDeliveryEngine } from '../../src/delivery/engine.ts';
import { startQueue } from '../../src/delivery/queue.ts';
import { inTransaction } from '../../src/domain/context.ts';
import { createLogger } from '../../src/logger.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/**
 * One customer cannot stall everyone (the engine's defaults: 256 slots per
 * worker process, 8 per endpoint).
 */
describe('fair across tenants', () => {
  const cleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it("40 endpoints that never answer (30 s timeout) leave room: another workspace's 20 deliveries arrive with p50 under 1 s, max under 3 s", async () => {
    const t: TestDispatch = await startTestDispatch();
    const hanging: Receiver = await startReceiver([], 'hang');
    const healthy: Receiver = await startReceiver();
    // Closing the hanging receiver ends its attempts, so stopping does not wait out their timeout.
    cleanup.push(async () => {
      await hanging.close();
      await healthy.close();
      await t.stop();
    });

    // A customer, through its portal, points 40 endpoints at a host that accepts and never answers.
    const noisyApp = await createDeliveryApp(t.client, { retrySchedule: [3600], attemptTimeoutMs: 30_000 });
    for (let i = 0; i < 40; i++)
      await createEndpoint(t.client, { appId: noisyApp, recipientId: 'hanging-customer', url: `${hanging.url}/${i}` });
    for (let i = 0; i < 10; i++)
      await send(t.client, { appId: noisyApp, recipientId: 'hanging-customer', data: { i } });
    // 400 tries, 320 of them allowed by the per-endpoint limit: they take what they may.
    await eventually(async () => (hanging.received.length >= 100 ? true : undefined), { timeoutMs: 20_000 });

    const other = await t.newWorkspace();
    const victimApp = await createDeliveryApp(other.client);
    await createEndpoint(other.client, { appId: victimApp, recipientId: 'calm', url: healthy.url });
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const started = Date.now();
      await send(other.client, { appId: victimApp, recipientId: 'calm', data: { i } });
      const arrived = await healthy.nth(i + 1);
      latencies.push(arrived.at - started);
    }
    console.log(
      `beside ${hanging.received.length} hanging tries: victim p50 ${median(latencies)} ms, max ${Math.max(...latencies)} ms`,
    );
    expect(median(latencies)).toBeLessThan(1_000);
    expect(Math.max(...latencies)).toBeLessThan(3_000);
    // The hanging customer kept its share: no more than half the slots.
    expect(hanging.received.length).toBeLessThanOrEqual(128);
  }, 90_000);

  it("a 20,000-message backlog of one workspace does not hold back another workspace's message: delivered within 2 s", async () => {
    const t: TestDispatch = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    const receiver: Receiver = await startReceiver();
    const lone: Receiver = await startReceiver();
    let engine: DeliveryEngine | undefined;
    cleanup.push(async () => {
      await engine?.stop();
      await receiver.close();
      await lone.close();
      await t.stop();
    });

    // The flood: 20,000 messages to 100 recipients (one endpoint each),
    // queued while no worker runs. Stored by SQL (sending 20,000 through the
    // API takes minutes on a busy machine), their tries queued through the
    // queue as sendMessage's transactions queue them, in batches of 100.
    const floodApp = await createDeliveryApp(t.client);
    for (let r = 0; r < 100; r++)
      await createEndpoint(t.client, { appId: floodApp, recipientId: `r${r}`, url: `${receiver.url}/${r}` });
    const pool = t.dispatch.db.pool;
    const { rows: deliveries } = await pool.query<{ id: string; endpointId: string }>(
      `WITH e AS (
         SELECT e.id, e."recipientId", row_number() OVER (ORDER BY e.id) - 1 AS k FROM "Endpoint" e WHERE e."appId" = $1
       ), m AS (
         INSERT INTO "Message" (id, "appId", "recipientId", uid, "eventType", data, "dataHash")
         SELECT 'msg_flood_' || n, $1, e."recipientId", 'flood-' || n, 'invoice.paid', jsonb_build_object('n', n), 'x'
         FROM generate_series(0, 19999) n JOIN e ON e.k = n % 100
         RETURNING id, "recipientId"
       )
       INSERT INTO "Delivery" (id, "appId", "recipientId", "messageId", "endpointId", "nextAttemptAt", "updatedAt")
       SELECT 'dlv_' || substr(m.id, 5), $1, m."recipientId", m.id, e.id, now(), now()
       FROM m JOIN e ON e."recipientId" = m."recipientId"
       RETURNING id, "endpointId"`,
      [floodApp],
    );
    expect(deliveries).toHaveLength(20_000);
    const producer = await startQueue({
      url: t.dispatch.db.url,
      pool,
      logger: createLogger('silent'),
      supervise: false,
      superviseIntervalSeconds: 60,
    });
    try {
      for (let i = 0; i < deliveries.length; i += 100) {
        await inTransaction(pool, (sql) =>
          producer.enqueue(
            sql,
            deliveries.slice(i, i + 100).map((d) => ({
              deliveryId: d.id,
              endpointId: d.endpointId,
              trigger: 'SCHEDULED' as const,
              try: 1,
              tenant: floodApp,
            })),
          ),
        );
      }
    } finally {
      await producer.stop();
    }
    const other = await t.newWorkspace();
    const loneApp = await createDeliveryApp(other.client);
    await createEndpoint(other.client, { appId: loneApp, recipientId: 'lone', url: lone.url });

    // A worker starts on the backlog.
    const config = loadConfig({
      DATABASE_URL: t.dispatch.db.url,
      DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
      LOG_LEVEL: 'warn',
    });
    engine = await startDeliveryEngine({ config, db: t.dispatch.db, logger: createLogger('warn'), work: true });
    await eventually(async () => (receiver.received.length >= 500 ? true : undefined), { timeoutMs: 30_000 });

    // The API process queues the lone message's try (its own count of that tenant: none).
    const started = Date.now();
    await send(other.client, { appId: loneApp, recipientId: 'lone' });
    const arrived = await lone.nth(1);
    const waited = arrived.at - started;
    const floodDone = receiver.received.length;
    console.log(`lone message delivered in ${waited} ms, with ${20_000 - floodDone} of the flood still queued`);
    expect(waited).toBeLessThan(2_000);
    // It really went ahead of a backlog.
    expect(floodDone).toBeLessThan(15_000);
  }, 120_000);
});
