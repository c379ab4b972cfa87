import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attemptsOf, createDeliveryApp, createEndpoint, deliveriesOf, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

const root = path.resolve(import.meta.dirname, '../..');

/** A worker-only Dispatch process on the test database, as `DISPATCH_ROLE=worker npm start` runs it. */
function startWorkerProcess(databaseUrl: string): ChildProcess {
  const child = spawn(path.join(root, 'node_modules/.bin/node'), ['--import', 'tsx', 'src/main.ts'], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      DISPATCH_ROLE: 'worker',
      PORT: '0',
      HOST: '127.0.0.1',
      DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
      // Look for lost jobs every second (default 15 s).
      DISPATCH_QUEUE_SUPERVISE_SECONDS: '1',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return child;
}

describe('a worker process killed mid-send', () => {
  let t: TestDispatch;
  let r: Receiver;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    // The API in this process queues; the worker processes send.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    // Three receivers' requests hang (the killed worker's), then every one succeeds.
    r = await startReceiver([
      'hang',
      'hang',
      'hang',
      { status: 200 },
      { status: 200 },
      { status: 200 },
      { status: 200, delayMs: 1_000 },
    ]);
  });
  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await r.close();
    await t.stop();
  });

  it('loses nothing: a new worker finishes its deliveries with the same webhook-id, the lost attempts closed as worker_lost', async () => {
    const appId = await createDeliveryApp(t.client, { retrySchedule: [1], attemptTimeoutMs: 30_000 });
    await createEndpoint(t.client, { appId, recipientId: 'crash', url: r.url });
    const messages = [];
    for (let i = 0; i < 3; i++) messages.push(await send(t.client, { appId, recipientId: 'crash', data: { i } }));

    const first = startWorkerProcess(t.dispatch.db.url);
    children.push(first);
    await r.nth(3);
    first.kill('SIGKILL');
    await once(first, 'exit');

    const second = startWorkerProcess(t.dispatch.db.url);
    children.push(second);
    for (const m of messages)
      expect((await settled(t.dispatch.db.pool, m.id, ['SUCCEEDED'], undefined, 40_000)).status).toBe('SUCCEEDED');

    expect(r.received).toHaveLength(6);
    const ids = (from: number, to: number) =>
      r.received
        .slice(from, to)
        .map((x) => String(x.headers['webhook-id']))
        .sort();
    expect(ids(0, 3)).toEqual(messages.map((m) => m.id).sort());
    expect(ids(3, 6)).toEqual(ids(0, 3));
    for (const m of messages) {
      const [delivery] = await deliveriesOf(t.dispatch.db.pool, m.id);
      const attempts = await attemptsOf(t.dispatch.db.pool, delivery!.id);
      expect(attempts.map((a) => [a.status, a.errorKind])).toEqual([
        ['FAILED', 'worker_lost'],
        ['SUCCEEDED', null],
      ]);
      expect(delivery!.attemptCount).toBe(2);
    }

    // SIGTERM mid-send: the worker lets the attempt finish, records it, and exits 0.
    const last = await send(t.client, { appId, recipientId: 'crash', data: { last: true } });
    await r.nth(7);
    second.kill('SIGTERM');
    const [code] = await once(second, 'exit');
    expect(code).toBe(0);
    const [delivery] = await deliveriesOf(t.dispatch.db.pool, last.id);
    expect(delivery).toMatchObject({ status: 'SUCCEEDED', attemptCount: 1 });
    expect((await attemptsOf(t.dispatch.db.pool, delivery!.id)).map((a) => [a.status, a.responseStatusCode])).toEqual([
      ['SUCCEEDED', 200],
    ]);
  }, 60_000);
});
