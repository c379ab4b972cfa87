import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchClient, type DispatchClient } from '../../packages/client/src/index.ts';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { RESPONSE_BODY_LIMIT } from '../../src/delivery/sender.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createTestDatabase } from '../support/database.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { type DispatchProcess, spawnDispatch } from '../support/process.ts';
import { eventually, type Receiver, startReceiver } from '../support/receiver.ts';

/**
 * Receivers that misbehave, each on its own port of 127.0.0.1, against a whole
 * Dispatch (API and workers) in its own process, so its memory can be read
 * from /metrics.
 */

interface Server {
  url: string;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

async function listen(server: net.Server): Promise<Server> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  server.on('connection', (socket: net.Socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    connections: () => connections,
    async close() {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** Reads the request, then never answers. */
const hangingServer = () => listen(http.createServer((req) => req.resume()));

/** Reads the request, then resets the connection (TCP RST). */
const resettingServer = () =>
  listen(http.createServer((req) => req.resume().on('end', () => req.socket.resetAndDestroy())));

/** Answers every connection with bytes that are not HTTP, over raw TCP. */
const garbageServer = () =>
  listen(
    net.createServer((socket) => {
      socket.resume();
      socket.end('SSH-2.0-OpenSSH_9.6\r\nthis is not HTTP at all\r\n\r\n');
    }),
  );

/** Answers 200 and a body that never ends, written as fast as the client reads it. */
async function endlessServer(): Promise<Server & { bytesWritten(): number }> {
  let written = 0;
  const chunk = Buffer.alloc(64 * 1024, 'z');
  const server = await listen(
    http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      const pump = () => {
        let more = true;
        while (!res.destroyed && more) {
          more = res.write(chunk);
          written += chunk.length;
        }
      };
      res.on('drain', pump);
      pump();
    }),
  );
  return { ...server, bytesWritten: () => written };
}

const ATTEMPT_TIMEOUT_MS = 500;
/** Messages to the endless body between the two memory readings. */
const ENDLESS_ATTEMPTS = 400;
/**
 * Attempts before the first reading. V8 grows its heap for a while under any
 * steady work (measured here: about 45 MiB more RSS over 400 more messages
 * after 400, whether the body was endless or 2 bytes; 4-6 MiB after 800), so
 * the readings bracket a process that has reached its working size.
 */
const WARM_UP = 800;
const MEMORY_GROWTH_BOUND = 64 * 1024 * 1024;

describe('receivers that hang, reset, answer garbage or never end their body, through the whole engine', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let dispatch: DispatchProcess;
  let client: DispatchClient;
  let appId: string;
  let hanging: Server;
  let resetting: Server;
  let garbage: Server;
  let endless: Awaited<ReturnType<typeof endlessServer>>;
  let healthy: Receiver;

  beforeAll(async () => {
    database = await createTestDatabase();
    db = connectDatabase(database.url, { max: 2 });
    [dispatch, hanging, resetting, garbage, endless, healthy] = await Promise.all([
      spawnDispatch({ DATABASE_URL: database.url, DISPATCH_ROLE: 'all', DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8' }),
      hangingServer(),
      resettingServer(),
      garbageServer(),
      endlessServer(),
      startReceiver(),
    ]);
    const apiKey = (await createApiKey(db.prisma, { workspaceName: 'Faulty receivers' })).token;
    client = createDispatchClient({ url: dispatch.url, apiKey });
    appId = await createDeliveryApp(client, { retrySchedule: [1], attemptTimeoutMs: ATTEMPT_TIMEOUT_MS });
  }, 90_000);

  afterAll(async () => {
    await dispatch?.stop();
    await Promise.all([hanging?.close(), resetting?.close(), garbage?.close(), endless?.close(), healthy?.close()]);
    await db?.close();
    await database?.drop();
  });

  it('records each failure with its kind, keeps 16 KiB of an endless body, and delivers to a healthy endpoint beside them promptly', async () => {
    const recipientId = 'beside-the-faulty';
    const endpoints = {
      hanging: await createEndpoint(client, { appId, recipientId, url: hanging.url }),
      resetting: await createEndpoint(client, { appId, recipientId, url: resetting.url }),
      garbage: await createEndpoint(client, { appId, recipientId, url: garbage.url }),
      endless: await createEndpoint(client, { appId, recipientId, url: endless.url }),
      healthy: await createEndpoint(client, { appId, recipientId, url: healthy.url }),
    };
    const messages = [];
    for (let i = 0; i < 8; i++) messages.push(await send(client, { appId, recipientId, data: { i } }));

    // Settled: the three failing endpoints tried twice (the app's schedule is one retry after 1 s), the others once.
    const byEndpoint = await eventually(
      async () => {
        const { rows } = await db.pool.query<{ endpointId: string; status: string; attemptCount: number }>(
          `SELECT "endpointId", status, "attemptCount" FROM "Delivery" WHERE "endpointId" = ANY($1)`,
          [Object.values(endpoints).map((e) => e.id)],
        );
        return rows.length === messages.length * Object.keys(endpoints).length &&
          rows.every((d) => d.status === 'SUCCEEDED' || d.status === 'FAILED')
          ? rows
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    const summary = (endpointId: string) => [
      ...new Set(byEndpoint.filter((d) => d.endpointId === endpointId).map((d) => `${d.status} x${d.attemptCount}`)),
    ];
    expect(summary(endpoints.hanging.id)).toEqual(['FAILED x2']);
    expect(summary(endpoints.resetting.id)).toEqual(['FAILED x2']);
    expect(summary(endpoints.garbage.id)).toEqual(['FAILED x2']);
    expect(summary(endpoints.endless.id)).toEqual(['SUCCEEDED x1']);
    expect(summary(endpoints.healthy.id)).toEqual(['SUCCEEDED x1']);

    const { rows: attempts } = await db.pool.query<{
      endpointId: string;
      status: string;
      errorKind: string | null;
      responseStatusCode: number | null;
      bodyBytes: number | null;
      durationMs: number;
      latencyMs: number;
    }>(
      `SELECT a."endpointId", a.status, a."errorKind", a."responseStatusCode", octet_length(a."responseBody") AS "bodyBytes", a."durationMs",
              (extract(epoch FROM a."finishedAt" - m."createdAt") * 1000)::int AS "latencyMs"
       FROM "Attempt" a JOIN "Message" m ON m.id = a."messageId" WHERE a."endpointId" = ANY($1)`,
      [Object.values(endpoints).map((e) => e.id)],
    );
    const of = (endpointId: string) => attempts.filter((a) => a.endpointId === endpointId);
    const kinds = (endpointId: string) => [
      ...new Set(of(endpointId).map((a) => `${a.status} ${a.errorKind ?? 'ok'} ${a.responseStatusCode ?? '-'}`)),
    ];
    expect(of(endpoints.hanging.id)).toHaveLength(16);
    expect(kinds(endpoints.hanging.id)).toEqual(['FAILED timeout -']);
    // Each hanging attempt was cut at the app's timeout, not much later.
    for (const a of of(endpoints.hanging.id)) expect(a.durationMs).toBeGreaterThanOrEqual(ATTEMPT_TIMEOUT_MS - 10);
    expect(Math.max(...of(endpoints.hanging.id).map((a) => a.durationMs))).toBeLessThan(ATTEMPT_TIMEOUT_MS + 1_000);
    expect(of(endpoints.resetting.id)).toHaveLength(16);
    expect(kinds(endpoints.resetting.id)).toEqual(['FAILED connection_reset -']);
    expect(of(endpoints.garbage.id)).toHaveLength(16);
    expect(kinds(endpoints.garbage.id)).toEqual(['FAILED invalid_response -']);
    // The endless body: accepted on its 200, its body cut at 16 KiB.
    expect(kinds(endpoints.endless.id)).toEqual(['SUCCEEDED ok 200']);
    expect(new Set(of(endpoints.endless.id).map((a) => a.bodyBytes))).toEqual(new Set([RESPONSE_BODY_LIMIT]));
    // The healthy endpoint beside them: each message there well within the time the failing ones take
    // (a hanging try alone lasts 500 ms, and their retries come after 1 s). 1.5 s leaves room for a loaded machine.
    expect(kinds(endpoints.healthy.id)).toEqual(['SUCCEEDED ok 200']);
    expect(healthy.received).toHaveLength(messages.length);
    const healthyLatency = Math.max(...of(endpoints.healthy.id).map((a) => a.latencyMs));
    expect(healthyLatency).toBeLessThan(1_500);
    console.info(
      `faulty receivers: healthy endpoint's slowest delivery ${healthyLatency} ms after send; hanging attempts ` +
        `${Math.min(...of(endpoints.hanging.id).map((a) => a.durationMs))}-${Math.max(...of(endpoints.hanging.id).map((a) => a.durationMs))} ms`,
    );
  }, 60_000);

  it(`keeps the Dispatch process's memory bounded over ${ENDLESS_ATTEMPTS} attempts against an endless body`, async () => {
    const recipientId = 'endless-only';
    const endpoint = await createEndpoint(client, { appId, recipientId, url: endless.url });
    const succeeded = async () =>
      (
        await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "Delivery" WHERE "endpointId" = $1 AND status = 'SUCCEEDED'`,
          [endpoint.id],
        )
      ).rows[0]!.n;
    const sendMany = async (count: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < count) {
            const i = next++;
            await send(client, { appId, recipientId, data: { i } });
          }
        }),
      );
    };

    // Warm-up, so the first reading is of a process that has already done this work many times.
    await sendMany(WARM_UP);
    await eventually(async () => ((await succeeded()) === WARM_UP ? true : undefined), {
      timeoutMs: 40_000,
      intervalMs: 100,
    });
    const before = await residentMemory(dispatch.url);
    const writtenBefore = endless.bytesWritten();

    // Read the memory while the attempts run, to catch a peak that is gone by the end.
    let peak = before;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await residentMemory(dispatch.url));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const started = Date.now();
    await sendMany(ENDLESS_ATTEMPTS);
    await eventually(async () => ((await succeeded()) === WARM_UP + ENDLESS_ATTEMPTS ? true : undefined), {
      timeoutMs: 40_000,
      intervalMs: 100,
    });
    const tookMs = Date.now() - started;
    sampling = false;
    await sampler;
    const after = await residentMemory(dispatch.url);
    peak = Math.max(peak, after);

    const { rows } = await db.pool.query<{ n: number; maxBytes: number; minBytes: number; maxMs: number }>(
      `SELECT count(*)::int AS n, max("durationMs")::int AS "maxMs", max(octet_length("responseBody"))::int AS "maxBytes", min(octet_length("responseBody"))::int AS "minBytes"
       FROM "Attempt" WHERE "endpointId" = $1 AND status = 'SUCCEEDED' AND "responseStatusCode" = 200`,
      [endpoint.id],
    );
    const { maxMs, ...stored } = rows[0]!;
    expect(stored).toEqual({
      n: WARM_UP + ENDLESS_ATTEMPTS,
      maxBytes: RESPONSE_BODY_LIMIT,
      minBytes: RESPONSE_BODY_LIMIT,
    });
    const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
    const written = endless.bytesWritten() - writtenBefore;
    console.info(
      `endless body: ${ENDLESS_ATTEMPTS} attempts in ${tookMs} ms (slowest attempt ${maxMs} ms); the receiver wrote ${mib(written)} MiB into sockets; ` +
        `Dispatch RSS before ${mib(before)} MiB, peak ${mib(peak)} MiB, after ${mib(after)} MiB`,
    );
    expect(peak - before).toBeLessThan(MEMORY_GROWTH_BOUND);
    expect(after - before).toBeLessThan(MEMORY_GROWTH_BOUND);
  }, 90_000);
});

/** The process's resident memory, as its /metrics reports it. */
async function residentMemory(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const match = /^dispatch_process_resident_memory_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  if (!match) throw new Error('no dispatch_process_resident_memory_bytes in /metrics');
  return Number(match[1]);
}
