import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type DispatchProcess, startWorkerProcess } from '../support/process.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

const MESSAGES = 200;
/** The message the FIFO receiver always fails: it exhausts its schedule, holding the ones behind it meanwhile. */
const HOLD = 5;
/** The worker is killed once the FIFO receiver has seen this many messages. */
const KILL_AFTER = 60;

describe('a FIFO endpoint', () => {
  let t: TestDispatch;
  let server: Server;
  let url: string;
  const workers: DispatchProcess[] = [];
  /** Per path: the message numbers in the order requests arrived, and when. */
  const arrivals = new Map<string, { i: number; at: number }[]>();
  let open = 0;
  let mostOpen = 0;
  const failedOnce = new Set<number>();

  const startWorker = () => startWorkerProcess(t.dispatch.db.url, workers);

  beforeAll(async () => {
    server = createServer((req, res) => {
      const path = req.url ?? '/';
      if (path === '/fifo') mostOpen = Math.max(mostOpen, ++open);
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const i = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { data: { i: number } }).data.i;
        const list = arrivals.get(path) ?? [];
        list.push({ i, at: Date.now() });
        arrivals.set(path, list);
        let status = 200;
        if (path === '/fifo') {
          // HOLD always fails; every 25th from 10 fails its first attempt.
          if (i === HOLD) status = 500;
          else if (i % 25 === 10 && !failedOnce.has(i)) {
            failedOnce.add(i);
            status = 503;
          }
        }
        // A little while in flight, so the kill catches a try mid-send now and then.
        setTimeout(() => {
          if (path === '/fifo') open--;
          res.writeHead(status).end(status === 200 ? 'ok' : 'no');
        }, 5);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The API in this process takes the messages; worker processes send them.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
  });
  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await t?.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it(`delivers ${MESSAGES} messages in order, one at a time, through failures and a worker killed midway; a failing message holds the ones behind it until it exhausts its schedule; an endpoint without ordering is not held back`, async () => {
    const appId = await createDeliveryApp(t.client, { retrySchedule: [1, 1, 1] });
    const fifo = await createEndpoint(t.client, { appId, recipientId: 'r', url: `${url}/fifo`, ordering: 'FIFO' });
    expect(fifo.ordering).toBe('FIFO');
    const free = await createEndpoint(t.client, { appId, recipientId: 'r', url: `${url}/free` });
    expect(free.ordering).toBe('NONE');
    await Promise.all([startWorker(), startWorker()]);

    const messageIds: string[] = [];
    const sending = (async () => {
      for (let i = 0; i < MESSAGES; i++)
        messageIds.push((await send(t.client, { appId, recipientId: 'r', data: { i } })).id);
    })();

    const fifoArrivals = () => arrivals.get('/fifo') ?? [];
    await eventually(async () => (new Set(fifoArrivals().map((a) => a.i)).size >= KILL_AFTER ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 20,
    });
    const victim = workers[0]!;
    victim.child.kill('SIGKILL');
    await new Promise((resolve) => victim.child.once('exit', resolve));
    await startWorker();
    await sending;

    const pool = t.dispatch.db.pool;
    await eventually(
      async () => {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "Delivery" WHERE "endpointId" = $1 AND status IN ('SUCCEEDED', 'FAILED')`,
          [fifo.id],
        );
        return rows[0]!.n === MESSAGES ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 100 },
    );

    // In order: every message, first reached in message order, and a message
    // reached again (a retry, or the try the killed worker had in flight) only
    // before the next one.
    const order = fifoArrivals().map((a) => a.i);
    const firsts = order.filter((i, k) => order.indexOf(i) === k);
    expect(firsts).toEqual(Array.from({ length: MESSAGES }, (_, i) => i));
    for (let k = 1; k < order.length; k++) expect(order[k]!, `arrival ${k}`).toBeGreaterThanOrEqual(order[k - 1]!);
    expect(mostOpen).toBe(1);

    const { rows } = await pool.query<{
      id: string;
      i: number;
      status: string;
      attemptCount: number;
      heldById: string | null;
    }>(
      `SELECT d.id, (m.data->>'i')::int AS i, d.status, d."attemptCount", d."heldById"
       FROM "Delivery" d JOIN "Message" m ON m.id = d."messageId" WHERE d."endpointId" = $1 ORDER BY d.id`,
      [fifo.id],
    );
    expect(rows.map((r) => r.i)).toEqual(Array.from({ length: MESSAGES }, (_, i) => i));
    const hold = rows[HOLD]!;
    expect(hold).toMatchObject({ status: 'FAILED', attemptCount: 4 });
    expect(rows.filter((r) => r.status !== 'SUCCEEDED').map((r) => r.i)).toEqual([HOLD]);
    // The one right behind the failing message was held back by it, and shows it.
    expect(rows[HOLD + 1]!.heldById).toBe(hold.id);
    const shown = await t.client.raw(
      `query ($appId: ID!, $id: ID!) { message(appId: $appId, id: $id) { deliveries { nodes { endpoint { id } status heldBy { id status } } } } }`,
      { appId, id: messageIds[HOLD + 1] },
    );
    const nodes = (
      shown.data as { message: { deliveries: { nodes: { endpoint: { id: string }; heldBy: unknown }[] } } }
    ).message.deliveries.nodes;
    expect(nodes.find((n) => n.endpoint.id === fifo.id)?.heldBy).toEqual({ id: hold.id, status: 'FAILED' });
    expect(nodes.find((n) => n.endpoint.id === free.id)?.heldBy).toBeNull();

    // The endpoint without ordering got the message after HOLD while HOLD was still failing at the FIFO one.
    const freeArrivals = arrivals.get('/free') ?? [];
    expect(new Set(freeArrivals.map((a) => a.i)).size).toBe(MESSAGES);
    const lastHoldTry = Math.max(
      ...fifoArrivals()
        .filter((a) => a.i === HOLD)
        .map((a) => a.at),
    );
    const freeNext = freeArrivals.find((a) => a.i === HOLD + 1)!.at;
    expect(freeNext).toBeLessThan(lastHoldTry);
  }, 240_000);
});

describe('a FIFO endpoint switched to NONE', () => {
  let t: TestDispatch;
  let receiver: Receiver;
  beforeAll(async () => {
    t = await startTestDispatch();
    // The first request (message 0) fails; its retry is a minute away.
    receiver = await startReceiver([{ status: 500, body: 'no' }]);
  });
  afterAll(async () => {
    await t?.stop();
    await receiver?.close();
  });

  it('releases the deliveries it held back: they are sent at once', async () => {
    const appId = await createDeliveryApp(t.client, { retrySchedule: [60] });
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'r', url: receiver.url, ordering: 'FIFO' });
    for (let i = 0; i < 3; i++) await send(t.client, { appId, recipientId: 'r', data: { i } });
    const pool = t.dispatch.db.pool;
    const held = await eventually(
      async () => {
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "Delivery" WHERE "endpointId" = $1 AND status = 'PENDING' AND "nextAttemptAt" IS NULL AND "heldById" IS NOT NULL`,
          [endpoint.id],
        );
        return rows[0]!.n === 2 ? rows[0]!.n : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(held).toBe(2);
    // The first delivery's try may be claimed after the other two were parked behind it.
    await receiver.nth(1);
    expect(receiver.received).toHaveLength(1);

    const updated = await t.client.raw(
      `mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { ordering } }`,
      { input: { id: endpoint.id, ordering: 'NONE' } },
    );
    expect(updated.data).toEqual({ updateEndpoint: { ordering: 'NONE' } });
    await receiver.nth(3);
    const bodies = receiver.received.map((r) => (JSON.parse(r.body) as { data: { i: number } }).data.i);
    expect(bodies.slice(1).sort()).toEqual([1, 2]);
  }, 60_000);
});
