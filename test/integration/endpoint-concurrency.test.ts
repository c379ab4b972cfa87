import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';
import { eventually } from '../support/receiver.ts';

const LIMIT = 3;
const PER_ENDPOINT = 40;

/**
 * DISPATCH_ENDPOINT_CONCURRENCY is counted in the database across every
 * worker process: two worker processes, each free to run 256 tries, never
 * have more than LIMIT requests open to one endpoint between them.
 */
describe('the per-endpoint limit across worker processes', () => {
  let t: TestDispatch;
  let server: Server;
  let url: string;
  const workers: DispatchProcess[] = [];
  /** Requests open now and the most ever open at once, per endpoint path. */
  const open = new Map<string, number>();
  const most = new Map<string, number>();
  let answered = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      const key = req.url ?? '/';
      open.set(key, (open.get(key) ?? 0) + 1);
      most.set(key, Math.max(most.get(key) ?? 0, open.get(key)!));
      req.resume();
      // Slow enough that tries pile up behind the limit.
      setTimeout(() => {
        open.set(key, open.get(key)! - 1);
        answered++;
        res.writeHead(200).end('ok');
      }, 40);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The API in this process takes the messages; it sends none.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
  });
  afterAll(async () => {
    for (const worker of workers) await worker.stop();
    await t?.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it(`two workers keep at most ${LIMIT} requests open to each endpoint, and use all ${LIMIT}`, async () => {
    const appId = await createDeliveryApp(t.client);
    await createEndpoint(t.client, { appId, recipientId: 'a', url: `${url}/a` });
    await createEndpoint(t.client, { appId, recipientId: 'b', url: `${url}/b` });
    // Queued before any worker runs, so both workers find a backlog at once.
    for (let i = 0; i < PER_ENDPOINT; i++) {
      await Promise.all([
        send(t.client, { appId, recipientId: 'a', data: { i } }),
        send(t.client, { appId, recipientId: 'b', data: { i } }),
      ]);
    }
    const env = {
      DATABASE_URL: t.dispatch.db.url,
      DISPATCH_ROLE: 'worker',
      DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
      DISPATCH_ENDPOINT_CONCURRENCY: String(LIMIT),
    };
    workers.push(...(await Promise.all([spawnDispatch(env), spawnDispatch(env)])));

    await eventually(async () => (answered === 2 * PER_ENDPOINT ? true : undefined), {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    // The receiver counts an answer when it sends it; the worker records it a moment later (batched).
    const succeeded = async () =>
      (
        await t.dispatch.db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "Delivery" WHERE status = 'SUCCEEDED'`,
        )
      ).rows[0]!.n;
    await expect.poll(succeeded, { interval: 50 }).toBe(2 * PER_ENDPOINT);
    expect(Object.fromEntries(most)).toEqual({ '/a': LIMIT, '/b': LIMIT });
  });
});
