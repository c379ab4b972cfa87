import type pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  type DispatchClient,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from './dispatch.ts';
import { eventually, type Receiver, startReceiver } from './receiver.ts';

/** Fixtures of the delivery tests: an app with a short retry schedule, its endpoints and messages. */
export async function createDeliveryApp(
  client: DispatchClient,
  options: { retrySchedule?: number[]; attemptTimeoutMs?: number; eventTypes?: string[] } = {},
): Promise<string> {
  const { createApp } = await client.request(CreateAppDocument, {
    input: {
      name: 'Deliveries',
      retrySchedule: options.retrySchedule ?? [1, 1],
      attemptTimeoutMs: options.attemptTimeoutMs ?? 5_000,
    },
  });
  for (const name of options.eventTypes ?? ['invoice.paid', 'invoice.voided']) {
    await client.request(CreateEventTypeDocument, { input: { appId: createApp.id, name } });
  }
  return createApp.id;
}

export async function createEndpoint(
  client: DispatchClient,
  input: {
    appId: string;
    recipientId: string;
    url: string;
    eventTypes?: string[];
    disabled?: boolean;
    headers?: Record<string, string>;
    rateLimit?: number;
    ordering?: 'NONE' | 'FIFO';
  },
) {
  return (await client.request(CreateEndpointDocument, { input })).createEndpoint;
}

export async function send(
  client: DispatchClient,
  input: { appId: string; recipientId: string; eventType?: string; data?: unknown; messageId?: string },
) {
  const { sendMessage } = await client.request(SendMessageDocument, {
    input: { eventType: 'invoice.paid', data: { amount: 42 }, ...input },
  });
  return sendMessage.message;
}

export interface DeliveryRow {
  id: string;
  status: string;
  attemptCount: number;
  nextAttemptAt: Date | null;
  endpointId: string;
}

export interface AttemptRow {
  id: string;
  status: string;
  trigger: string;
  responseStatusCode: number | null;
  responseBody: string | null;
  durationMs: number | null;
  error: string | null;
  errorKind: string | null;
  url: string;
  finishedAt: Date | null;
}

export async function deliveriesOf(pool: pg.Pool, messageId: string): Promise<DeliveryRow[]> {
  const { rows } = await pool.query<DeliveryRow>(`SELECT * FROM "Delivery" WHERE "messageId" = $1 ORDER BY id`, [
    messageId,
  ]);
  return rows;
}

export async function attemptsOf(pool: pg.Pool, deliveryId: string): Promise<AttemptRow[]> {
  const { rows } = await pool.query<AttemptRow>(`SELECT * FROM "Attempt" WHERE "deliveryId" = $1 ORDER BY id`, [
    deliveryId,
  ]);
  return rows;
}

/** Waits until the only delivery of a message (to the given endpoint, if any) has reached one of `statuses`. */
export async function settled(
  pool: pg.Pool,
  messageId: string,
  statuses: string[] = ['SUCCEEDED', 'FAILED', 'CANCELED'],
  endpointId?: string,
  timeoutMs = 15_000,
) {
  return eventually(
    async () => {
      const rows = (await deliveriesOf(pool, messageId)).filter((d) => !endpointId || d.endpointId === endpointId);
      const row = rows[0];
      return row && statuses.includes(row.status) ? row : undefined;
    },
    { timeoutMs },
  );
}

/**
 * The setup delivery tests share: one Dispatch and one app with a short retry
 * schedule for the file (handed to `ready` once started), receivers started on
 * demand, everything stopped at the end. Call inside `describe`; returns the
 * function that starts a receiver.
 */
export function useDeliveryApp(
  app: { retrySchedule: number[]; attemptTimeoutMs: number },
  ready: (started: { t: TestDispatch; appId: string }) => void,
): (...args: Parameters<typeof startReceiver>) => Promise<Receiver> {
  let t: TestDispatch | undefined;
  const open: Receiver[] = [];
  beforeAll(async () => {
    t = await startTestDispatch();
    ready({ t, appId: await createDeliveryApp(t.client, app) });
  });
  afterAll(async () => {
    await t?.stop();
    await Promise.all(open.map((r) => r.close()));
  });
  return async (...args) => {
    const r = await startReceiver(...args);
    open.push(r);
    return r;
  };
}
