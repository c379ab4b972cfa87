import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Client, createClient } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  createDispatchClient,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { newId } from '../../src/domain/ids.ts';
import { createTestDatabase } from '../support/database.ts';
import { liveSubscribers, subscribeWs } from '../support/live.ts';
import type { LoadCommand, LoadMessage } from '../support/live-load-worker.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';

// The issue's target: 1,000 attempts/s to 50 subscribers for 3 s, every attempt to every
// subscriber exactly once, in one order. A subscriber whose subscription ends early resubscribes
// with its last cursor (live-load-worker.ts). The API, the publisher and the subscribers (spread over LIVE_LOAD_PROCESSES child
// processes) each run in their own process, so a client falling behind is not mistaken for the
// server doing so. The default is the target; on 2 cores it passes beside another test file
// (the api process spends ~1.5 s of CPU on it, each subscriber process ~0.35 s), but not when
// other work saturates the machine (the report's cpuMs.machine tells). LIVE_LOAD_SUBSCRIBERS,
// _RATE, _SECONDS and _PROCESSES change it; LIVE_LOAD_CPU_PROF=<dir> profiles the api process.
const RATE = Number(process.env.LIVE_LOAD_RATE ?? 1_000); // attempts per second
const SECONDS = Number(process.env.LIVE_LOAD_SECONDS ?? 3);
const SUBSCRIBERS = Number(process.env.LIVE_LOAD_SUBSCRIBERS ?? 50);
const PROCESSES = Math.min(SUBSCRIBERS, Number(process.env.LIVE_LOAD_PROCESSES ?? 2));
const CPU_PROF = process.env.LIVE_LOAD_CPU_PROF;
const TOTAL = RATE * SECONDS;

const workerPath = fileURLToPath(new URL('../support/live-load-worker.ts', import.meta.url));
const projectNode = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));

/** A live-load-worker child: its messages in order, and a way to wait for the next of a type. */
function forkWorker(command: LoadCommand) {
  const child = fork(workerPath, [], {
    execPath: existsSync(projectNode) ? projectNode : process.execPath,
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const messages: LoadMessage[] = [];
  let wake: (() => void) | undefined;
  child.on('message', (m) => {
    messages.push(m as LoadMessage);
    wake?.();
  });
  child.once('exit', () => wake?.());
  child.send(command);
  return {
    send: (m: LoadCommand) => child.send(m),
    async next<T extends LoadMessage['type']>(type: T, timeoutMs: number): Promise<Extract<LoadMessage, { type: T }>> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const failed = messages.find((m) => m.type === 'failed');
        if (failed) throw new Error(`load worker failed: ${(failed as { error: string }).error}`);
        const found = messages.find((m) => m.type === type);
        if (found) return found as Extract<LoadMessage, { type: T }>;
        if (child.exitCode !== null || child.signalCode !== null)
          throw new Error(`load worker exited before "${type}"`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`load worker: no "${type}" in ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}

/** Events the api process dropped because a subscriber overflowed, from its /metrics. */
async function overflowDrops(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const match = /^dispatch_live_events_dropped_total\{field="attemptUpdated",reason="overflow"\} (\d+)/m.exec(text);
  return match ? Number(match[1]) : 0;
}

/** CPU ms a process has used (Linux /proc), and busy ms of the whole machine (all cores), to tell who used the CPU. */
async function cpuOf(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime + stime, in 10 ms ticks
}
async function machineBusyMs(): Promise<number> {
  const [user, nice, system, , , irq, softirq, steal] = (await readFile('/proc/stat', 'utf8'))
    .split('\n')[0]!
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) * 10;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

/**
 * The API is its own process (as in production, and so the test's clients
 * and publisher do not share its CPU); this process plays the worker and
 * the subscribers.
 */
describe('live feed under load', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let api: DispatchProcess;
  let apiKey: string;
  let appId: string;
  let attempts: { attemptId: string; appId: string; recipientId: string; messageId: string; endpointId: string }[];
  const clients: { dispose(): unknown }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, { max: 4 });
    api = await spawnDispatch({
      DATABASE_URL: database.url,
      DISPATCH_ROLE: 'api',
      DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
      ...(CPU_PROF ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${CPU_PROF}` } : {}),
    });
    apiKey = (await createApiKey(db.prisma, { workspaceName: 'Live load' })).token;
    const client = createDispatchClient({ url: api.url, apiKey });
    const { createApp } = await client.request(CreateAppDocument, { input: { name: 'Load' } });
    appId = createApp.id;
    await client.request(CreateEventTypeDocument, { input: { appId, name: 'tick' } });
    const { createEndpoint } = await client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'customer_load', url: 'http://127.0.0.1:9/load', disabled: true },
    });
    const { sendMessage } = await client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_load', eventType: 'tick', data: {} },
    });
    const prisma = db.prisma;
    const message = await prisma.message.findUniqueOrThrow({ where: { id: sendMessage.message.id } });
    const delivery = await prisma.delivery.create({
      data: {
        id: newId('Delivery'),
        appId,
        recipientId: message.recipientId,
        messageId: message.id,
        endpointId: createEndpoint.id,
      },
    });
    // Rows are written up front, so the measured part is the feed, not the inserts. Their
    // 16 KiB response bodies make a subscriber that asks for them heavy to send to.
    const body = 'x'.repeat(16 * 1024);
    attempts = Array.from({ length: TOTAL }, () => ({
      attemptId: newId('Attempt'),
      appId,
      recipientId: message.recipientId,
      messageId: message.id,
      endpointId: createEndpoint.id,
    }));
    for (let i = 0; i < attempts.length; i += 500) {
      await prisma.attempt.createMany({
        data: attempts.slice(i, i + 500).map((a) => ({
          id: a.attemptId,
          appId,
          recipientId: a.recipientId,
          messageId: a.messageId,
          endpointId: a.endpointId,
          deliveryId: delivery.id,
          url: 'http://127.0.0.1:9/load',
          // Written SENDING up front (before anyone subscribes); the publisher finishes them at the rate.
          status: 'SENDING' as const,
          responseStatusCode: 500,
          responseBody: body,
          finishedAt: new Date(),
        })),
      });
    }
  }, 90_000);

  afterAll(async () => {
    for (const c of clients) await c.dispose();
    await api?.stop();
    await db?.close();
    await database?.drop();
  });

  it(`delivers ${RATE} attempts/s for ${SECONDS} s to ${SUBSCRIBERS} subscribers without loss, and everything to one that stops reading, later`, async () => {
    const ids = attempts.map((a) => a.attemptId);
    const workers = Array.from({ length: PROCESSES }, (_, p) =>
      forkWorker({
        role: 'subscribers',
        url: api.url,
        apiKey,
        query:
          'subscription($appId: ID!, $after: Cursor) { attemptUpdated(appId: $appId, after: $after) { id status cursor } }',
        variables: { appId },
        // An even share each, the remainder to the first ones.
        count: Math.floor(SUBSCRIBERS / PROCESSES) + (p < SUBSCRIBERS % PROCESSES ? 1 : 0),
        ids,
      }),
    );
    let publisher: ReturnType<typeof forkWorker> | undefined;
    try {
      await Promise.all(workers.map((w) => w.next('started', 30_000)));

      // The slow subscriber asks for the 16 KiB bodies and then stops reading its socket.
      let slowSocket: WebSocket | undefined;
      class CapturingWebSocket extends WebSocket {
        constructor(...args: ConstructorParameters<typeof WebSocket>) {
          super(...args);
          slowSocket = this;
        }
      }
      let slowClosed: { code: number; reason: string } | undefined;
      const slowClient: Client = createClient({
        url: `${api.url.replace(/^http/, 'ws')}/graphql`,
        webSocketImpl: CapturingWebSocket,
        connectionParams: { authorization: `Bearer ${apiKey}` },
        retryAttempts: 0,
        lazy: false,
        onNonLazyError: () => undefined,
        on: {
          closed: (event) => {
            const { code, reason } = event as { code: number; reason: string };
            slowClosed = { code, reason };
          },
        },
      });
      clients.push(slowClient);
      const slow = subscribeWs<{ attemptUpdated: { id: string; status: string; responseBody: string } }>(
        slowClient,
        'subscription($appId: ID!) { attemptUpdated(appId: $appId) { id status responseBody } }',
        { appId },
      );
      await expect.poll(() => liveSubscribers(api.url, 'attemptUpdated'), { timeout: 30_000 }).toBe(SUBSCRIBERS + 1);
      slowSocket!.pause();

      const apiCpuBefore = await cpuOf(api.child.pid!);
      const machineBefore = await machineBusyMs();
      const wallBefore = Date.now();
      // The publisher is another process with its own bus: NOTIFY only, like a worker.
      publisher = forkWorker({ role: 'publisher', databaseUrl: database.url, rate: RATE, attempts });
      const published = await publisher.next('published', 60_000);
      // The slow subscriber fell far behind: the server dropped its backlog from memory (bounded).
      // It reads again now, well before the server's keep-alive (a ping unanswered for 12 s) drops its socket.
      await expect.poll(() => overflowDrops(api.url), { timeout: 10_000 }).toBeGreaterThan(0);
      slowSocket!.resume();
      for (const w of workers) w.send({ type: 'finish', publishedAt: published.publishedAt, timeoutMs: 120_000 });
      const reports = await Promise.all(workers.map((w) => w.next('report', 150_000)));
      const doneSeconds = (Date.now() - published.publishedAt[0]!) / 1000;
      const cpuMs = {
        api: (await cpuOf(api.child.pid!)) - apiCpuBefore,
        publisher: published.cpuMs,
        subscriberProcesses: reports.map((r) => r.cpuMs),
        // Everything on the machine (PostgreSQL, this runner, other tests) over the same wall time.
        machine: (await machineBusyMs()) - machineBefore,
        wall: Date.now() - wallBefore,
      };

      const subscribers = reports.flatMap((r) => r.subscribers);
      const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
      process.stdout.write(
        `live feed load: per subscriber: ${subscribers.map((s) => `${s.received}${s.resubscribed ? `/resubscribed ${s.resubscribed}` : ''}${s.closed ? `/closed ${s.closed.code} ${s.closed.reason}` : ''}`).join(' ')}\n`,
      );
      process.stdout.write(`live feed load: cpu ms ${JSON.stringify(cpuMs)}\n`);
      expect(subscribers).toHaveLength(SUBSCRIBERS);
      for (const s of subscribers) {
        // Every attempt exactly once, no errors, never cut off.
        expect(s, `a subscriber received ${s.received} of ${TOTAL}`).toMatchObject({
          received: TOTAL,
          unexpected: 0,
          errors: 0,
        });
      }
      // Concurrent publishes commit in any order; every subscriber sees that one order.
      expect(new Set(subscribers.map((s) => s.orderHash)).size).toBe(1);

      // Once it reads again, what it missed is read from the event log: every attempt, once, in order.
      await slow.until((f) => f.data.length >= TOTAL || f.ended !== undefined, 60_000, 'the slow subscriber');
      const slowIds = slow.data.map((d) => d.attemptUpdated.id);
      expect(slow.ended).toBeUndefined();
      expect(slowIds.length).toBe(TOTAL);
      expect(new Set(slowIds).size).toBe(TOTAL);
      expect(slow.data.every((d) => d.attemptUpdated.status === 'FAILED' && d.attemptUpdated.responseBody)).toBe(true);
      // The same one order as the others'.
      const slowOrder = slowIds.map((id) => ids.indexOf(id));
      expect(createHash('sha256').update(Int32Array.from(slowOrder)).digest('hex')).toBe(subscribers[0]!.orderHash);

      const report = {
        subscribers: SUBSCRIBERS,
        subscriberProcesses: PROCESSES,
        published: TOTAL,
        publishSeconds: +published.seconds.toFixed(2),
        publishedPerSecond: Math.round(TOTAL / published.seconds),
        allDeliveredAfterSeconds: +doneSeconds.toFixed(2),
        cpuMs,
        latencyMs: {
          p50: Math.round(percentile(latencies, 50)),
          p99: Math.round(percentile(latencies, 99)),
          max: Math.round(latencies.at(-1)!),
        },
        slowSubscriber: { received: slow.data.length, closed: slowClosed },
        resubscribed: subscribers.reduce((n, s) => n + s.resubscribed, 0),
      };
      process.stdout.write(`live feed load: ${JSON.stringify(report)}\n`);
      // Latency is reported, not asserted: beside other work on a 2-core machine it is the
      // machine's (the report's cpuMs.machine tells); what must hold is above, every attempt to
      // every subscriber exactly once, in one order, whoever fell behind.
    } finally {
      await Promise.all([...workers, ...(publisher ? [publisher] : [])].map((w) => w.stop()));
    }
  }, 300_000);
});
