import { type ProxyTracerProvider, trace } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELIVERY_QUEUE, QUEUE_SCHEMA } from '../../src/delivery/queue.ts';
import { tracingOn } from '../../src/tracing.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

/** With no OTEL_* variable set, Dispatch registers no OpenTelemetry SDK and stores no trace context. */

let t: TestDispatch;
beforeAll(async () => {
  t = await startTestDispatch();
});
afterAll(async () => t?.stop());

describe('tracing off (OTEL unset)', () => {
  it('registers nothing, and a sent message’s jobs carry no traceparent', async () => {
    expect(t.dispatch.config.tracing).toBeUndefined();
    expect(tracingOn()).toBe(false);
    const provider = trace.getTracerProvider() as ProxyTracerProvider;
    expect(provider.getDelegate().constructor.name).toBe('NoopTracerProvider');

    const appId = await createDeliveryApp(t.client, { retrySchedule: [3600] });
    // Nothing listens there: the try fails and its retry waits in the queue.
    await createEndpoint(t.client, { appId, recipientId: 'customer_untraced', url: 'http://127.0.0.1:9/hook' });
    const message = await send(t.client, { appId, recipientId: 'customer_untraced' });
    const { rows: tables } = await t.dispatch.db.pool.query<{ table_name: string }>(
      `SELECT table_name FROM ${QUEUE_SCHEMA}.queue WHERE name = $1`,
      [DELIVERY_QUEUE],
    );
    const { rows } = await t.dispatch.db.pool.query<{ data: Record<string, unknown> }>(
      `SELECT j.data FROM ${QUEUE_SCHEMA}.${tables[0]!.table_name} j JOIN "Delivery" d ON d.id = j.data->>'d'
       WHERE d."messageId" = $1`,
      [message.id],
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.data).not.toHaveProperty('p');
  });
});
