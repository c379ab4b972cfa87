/**
 * A child process of the live-feed load test (forked with an IPC channel), so
 * neither the subscribers nor the publisher share a CPU-bound event loop with
 * each other or with the test runner. Role `subscribers` opens its share of
 * graphql-ws clients and reports what each one received, resubscribing with
 * its last cursor whenever its subscription ends before it has everything;
 * role `publisher` finishes attempts (SENDING -> FAILED) at a fixed rate, as a
 * worker does: an UPDATE per 10 ms slice (the event log's trigger records
 * each), then a notification on a bus of its own.
 *
 * Times are wall-clock milliseconds with sub-millisecond precision
 * (`performance.timeOrigin + performance.now()`), comparable across processes
 * of one machine.
 */
import { createHash } from 'node:crypto';
import { createClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import type { AttemptEvent } from '../../src/live/bus.ts';
import { createPgLiveBus } from '../../src/live/pg-bus.ts';
import { createLogger } from '../../src/logger.ts';

export type LoadAttempt = Omit<AttemptEvent, 'status'>;

export type LoadCommand =
  | {
      role: 'subscribers';
      url: string;
      apiKey: string;
      query: string;
      variables: Record<string, unknown>;
      count: number;
      ids: string[];
    }
  | { role: 'publisher'; databaseUrl: string; rate: number; attempts: LoadAttempt[] }
  | { type: 'finish'; publishedAt: number[]; timeoutMs: number };

export interface SubscriberReport {
  received: number;
  /** Ids received more than once, or not among the published ones. */
  unexpected: number;
  errors: number;
  closed?: { code: number; reason: string };
  /** Times the subscription ended early (cut off, error) and was made again after the last cursor. */
  resubscribed: number;
  /** sha256 of the publish-order indices in receipt order: equal for subscribers that saw one order. */
  orderHash: string;
}

export type LoadMessage =
  | { type: 'started' }
  | { type: 'report'; subscribers: SubscriberReport[]; latencies: number[]; cpuMs: number }
  | { type: 'published'; publishedAt: number[]; seconds: number; cpuMs: number }
  | { type: 'failed'; error: string };

const now = () => performance.timeOrigin + performance.now();
/** CPU time this process has used since `since`. */
const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return Math.round((used.user + used.system) / 1000);
};
/** Resolves once the message is handed over, so disconnecting after it does not lose it. */
const send = (message: LoadMessage) =>
  new Promise<void>((resolve, reject) =>
    process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())),
  );

async function runSubscribers(command: Extract<LoadCommand, { role: 'subscribers' }>) {
  const index = new Map(command.ids.map((id, i) => [id, i]));
  const total = command.ids.length;
  const subscribers = Array.from({ length: command.count }, () => {
    const state = {
      order: [] as number[],
      at: [] as number[],
      seen: new Uint8Array(total),
      unexpected: 0,
      errors: 0,
      ended: false,
      resubscribed: 0,
      cursor: undefined as string | undefined,
      closed: undefined as { code: number; reason: string } | undefined,
    };
    const holder = { client: undefined as ReturnType<typeof createClient> | undefined };
    const connect = () =>
      createClient({
        url: `${command.url.replace(/^http/, 'ws')}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${command.apiKey}` },
        retryAttempts: 0,
        shouldRetry: () => false,
        lazy: false,
        onNonLazyError: () => undefined,
        on: {
          closed: (event) =>
            (state.closed = { code: (event as { code: number }).code, reason: (event as { reason: string }).reason }),
        },
      });
    // Ended before it has every attempt (cut off, or the socket closed): again, after the last cursor, on a new socket.
    const again = () => {
      if (state.ended || state.order.length >= total) return;
      state.resubscribed++;
      const old = holder.client;
      holder.client = connect();
      void old?.dispose();
      subscribe();
    };
    const subscribe = () =>
      holder.client!.subscribe<{ attemptUpdated: { id: string; cursor: string } }>(
        { query: command.query, variables: { ...command.variables, after: state.cursor ?? null } },
        {
          next: (result) => {
            const at = now();
            if (result.errors?.length) state.errors++;
            if (!result.data) return;
            state.cursor = result.data.attemptUpdated.cursor;
            const i = index.get(result.data.attemptUpdated.id);
            if (i === undefined || state.seen[i]) {
              state.unexpected++;
              return;
            }
            state.seen[i] = 1;
            state.order.push(i);
            state.at.push(at);
          },
          error: () => setTimeout(again, 100),
          complete: () => setTimeout(again, 100),
        },
      );
    holder.client = connect();
    subscribe();
    return {
      state,
      get client() {
        return holder.client!;
      },
    };
  });
  await send({ type: 'started' });
  const cpuStart = process.cpuUsage();

  const finish = await new Promise<Extract<LoadCommand, { type: 'finish' }>>((resolve) =>
    process.once('message', (m) => resolve(m as never)),
  );
  const deadline = Date.now() + finish.timeoutMs;
  while (subscribers.some(({ state }) => state.order.length < total) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  for (const { state } of subscribers) state.ended = true;
  const latencies: number[] = [];
  const reports = subscribers.map(({ state }) => {
    for (const [k, i] of state.order.entries()) latencies.push(state.at[k]! - finish.publishedAt[i]!);
    return {
      received: state.order.length,
      unexpected: state.unexpected,
      errors: state.errors,
      closed: state.closed,
      resubscribed: state.resubscribed,
      orderHash: createHash('sha256').update(Int32Array.from(state.order)).digest('hex'),
    };
  });
  await send({ type: 'report', subscribers: reports, latencies, cpuMs: cpuMs(cpuStart) });
  await Promise.all(subscribers.map(({ client }) => client.dispose()));
}

async function runPublisher(command: Extract<LoadCommand, { role: 'publisher' }>) {
  // Its own pool and bus, NOTIFY only: like a worker process.
  const pool = new pg.Pool({ connectionString: command.databaseUrl, max: 8 });
  const bus = createPgLiveBus({
    url: command.databaseUrl,
    pool,
    logger: createLogger('warn', 'load-publisher'),
    listen: false,
  });
  await pool.query('SELECT 1');
  const { attempts, rate } = command;
  const publishedAt: number[] = new Array(attempts.length);
  const cpuStart = process.cpuUsage();
  const started = performance.now();
  let sent = 0;
  // Paced in 10 ms slices: each slice finishes what the schedule says is due by then, in one UPDATE.
  while (sent < attempts.length) {
    const due = Math.min(attempts.length, Math.floor(((performance.now() - started) / 1000) * rate) + 10);
    const at = now();
    const slice = attempts.slice(sent, due);
    for (; sent < due; sent++) publishedAt[sent] = at;
    await pool.query(
      `UPDATE "Attempt" SET status = 'FAILED', "finishedAt" = now() WHERE id = ANY($1::text[]) AND status = 'SENDING'`,
      [slice.map((a) => a.attemptId)],
    );
    await Promise.all(slice.map((a) => bus.publishAttempt({ ...a, status: 'FAILED' })));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await send({ type: 'published', publishedAt, seconds: (performance.now() - started) / 1000, cpuMs: cpuMs(cpuStart) });
  await bus.close();
  await pool.end();
}

process.once('message', (command: LoadCommand) => {
  const run =
    'role' in command && command.role === 'publisher'
      ? runPublisher(command)
      : runSubscribers(command as Extract<LoadCommand, { role: 'subscribers' }>);
  run.then(
    () => process.disconnect(),
    (error: unknown) => {
      void send({ type: 'failed', error: String((error as Error).stack ?? error) }).finally(() => process.disconnect());
    },
  );
});
