import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeliveryApp, createEndpoint, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

// Few slots, so a flood could take them all if per-endpoint concurrency did not hold it back.
describe('one slow endpoint never delays the others', () => {
  let t: TestDispatch;
  let appId: string;
  let hanging: Receiver;
  let healthy: Receiver;

  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_WORKER_CONCURRENCY: '4', DISPATCH_ENDPOINT_CONCURRENCY: '2' });
    appId = await createDeliveryApp(t.client, { retrySchedule: [60], attemptTimeoutMs: 4_000 });
    hanging = await startReceiver([], 'hang');
    healthy = await startReceiver();
  });
  afterAll(async () => {
    // Closing the receivers ends the hanging attempts, so stopping does not wait out their timeout.
    await hanging.close();
    await healthy.close();
    await t.stop();
  });

  it('delivers to a healthy endpoint promptly while a flood to a hanging one waits its turn', async () => {
    await createEndpoint(t.client, { appId, recipientId: 'flooding', url: hanging.url });
    await createEndpoint(t.client, { appId, recipientId: 'calm', url: healthy.url });
    for (let i = 0; i < 20; i++) await send(t.client, { appId, recipientId: 'flooding', data: { i } });
    await hanging.nth(2);
    // Two in flight to the hanging endpoint (its limit); the other 18 wait in the queue.
    const inFlight = async () => {
      const { rows } = await t.dispatch.db.pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "Attempt" WHERE status = 'SENDING'`,
      );
      return rows[0]!.n;
    };
    expect(await eventually(async () => ((await inFlight()) === 2 ? 2 : undefined))).toBe(2);

    const before = Date.now();
    const message = await send(t.client, { appId, recipientId: 'calm' });
    await healthy.nth(1);
    const waitedMs = Date.now() - before;
    console.log(
      `healthy endpoint delivered in ${waitedMs} ms beside 2 hanging attempts and 18 queued for the hanging endpoint`,
    );
    expect(waitedMs).toBeLessThan(1_000);
    expect((await settled(t.dispatch.db.pool, message.id)).status).toBe('SUCCEEDED');
    expect(hanging.received).toHaveLength(2);
    expect(await inFlight()).toBe(2);
  });
});
