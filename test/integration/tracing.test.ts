import { randomBytes } from 'node:crypto';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeliveryApp, createEndpoint, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { eventually, startReceiver } from '../support/receiver.ts';

/**
 * OpenTelemetry traces, recorded by an in-memory exporter: one sendMessage
 * to a real receiver on 127.0.0.1 is one trace, continued from the caller's
 * traceparent, from the GraphQL operation through the message's group commit
 * to each try of its delivery, a retry (a later job, possibly another
 * worker's) included.
 */

const exporter = new InMemorySpanExporter();
let t: TestDispatch;
beforeAll(async () => {
  t = await startTestDispatch({}, { spanExporter: exporter });
});
afterAll(async () => t?.stop());

const SEND = `mutation SendMessage($input: SendMessageInput!) {
  sendMessage(input: $input) { message { id messageId } } }`;

/** Sends a message as a caller in its own trace would: with a W3C traceparent header. */
async function sendTraced(input: Record<string, unknown>) {
  const traceId = randomBytes(16).toString('hex');
  const callerSpanId = randomBytes(8).toString('hex');
  const response = await fetch(`${t.url}/graphql`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${t.apiKey}`,
      traceparent: `00-${traceId}-${callerSpanId}-01`,
    },
    body: JSON.stringify({ query: SEND, variables: { input }, operationName: 'SendMessage' }),
  });
  const body = (await response.json()) as { data: { sendMessage: { message: { id: string; messageId: string } } } };
  return { traceId, callerSpanId, message: body.data.sendMessage.message };
}

const inTrace = (traceId: string) => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

describe('OpenTelemetry tracing', () => {
  it('traces a sendMessage from the GraphQL operation through its group commit to its delivery try', async () => {
    const receiver = await startReceiver();
    try {
      const appId = await createDeliveryApp(t.client);
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_traced', url: receiver.url });
      const { traceId, callerSpanId, message } = await sendTraced({
        appId,
        recipientId: 'customer_traced',
        eventType: 'invoice.paid',
        data: { amount: 1 },
        messageId: 'traced-1',
      });
      await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED']);
      const attempt = await eventually(async () => inTrace(traceId).find((s) => s.name === 'dispatch.attempt'));

      const spans = inTrace(traceId);
      const operation = spans.find((s) => s.name === 'mutation SendMessage');
      expect(operation, JSON.stringify(spans.map((s) => s.name))).toBeDefined();
      expect(operation!.kind).toBe(SpanKind.SERVER);
      expect(parentOf(operation!)).toBe(callerSpanId);
      expect(operation!.attributes).toMatchObject({
        'graphql.operation.type': 'mutation',
        'graphql.operation.name': 'SendMessage',
        'dispatch.graphql.fields': ['sendMessage'],
      });

      const commit = spans.find((s) => s.name === 'dispatch.message.group_commit');
      expect(commit).toBeDefined();
      expect(parentOf(commit!)).toBe(operation!.spanContext().spanId);
      expect(commit!.attributes).toMatchObject({
        'dispatch.message.id': message.id,
        'dispatch.app.id': appId,
        'dispatch.group_commit.messages': 1,
      });

      // pg-boss's own span of queueing the try belongs to the commit; its polls of the queue are not traced.
      const queued = spans.find((s) => s.name === 'insert dispatch-try');
      expect(queued && parentOf(queued)).toBe(commit!.spanContext().spanId);
      expect(exporter.getFinishedSpans().filter((s) => s.name.startsWith('receive '))).toEqual([]);

      // The try ran in a worker, from a job: its span is still a child of the request's operation.
      expect(attempt.kind).toBe(SpanKind.CLIENT);
      expect(parentOf(attempt)).toBe(operation!.spanContext().spanId);
      expect(attempt.attributes).toMatchObject({
        'dispatch.endpoint.id': endpoint.id,
        'dispatch.message.id': message.id,
        'dispatch.webhook.id': 'traced-1',
        'dispatch.attempt.number': 1,
        'dispatch.attempt.trigger': 'SCHEDULED',
        'dispatch.attempt.outcome': 'succeeded',
        'http.response.status_code': 200,
        'http.request.method': 'POST',
        'server.address': new URL(receiver.url).host,
      });
      expect(attempt.status.code).not.toBe(SpanStatusCode.ERROR);
      // The webhook itself carries no trace header: the receiver's traces are its own.
      expect((await receiver.nth(1)).headers.traceparent).toBeUndefined();
    } finally {
      await receiver.close();
    }
  });

  it("links a retry, queued as a later job, to the same request's trace, with each try's outcome", async () => {
    const receiver = await startReceiver([{ status: 500 }], { status: 204 });
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [1] });
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_retried', url: receiver.url });
      const { traceId, message } = await sendTraced({
        appId,
        recipientId: 'customer_retried',
        eventType: 'invoice.paid',
        data: { amount: 2 },
      });
      await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED']);
      const tries = await eventually(async () => {
        const found = inTrace(traceId).filter((s) => s.name === 'dispatch.attempt');
        return found.length === 2 ? found : undefined;
      });
      const operation = inTrace(traceId).find((s) => s.name === 'mutation SendMessage')!;
      const byNumber = tries.sort(
        (a, b) => Number(a.attributes['dispatch.attempt.number']) - Number(b.attributes['dispatch.attempt.number']),
      );
      for (const span of byNumber) {
        expect(parentOf(span)).toBe(operation.spanContext().spanId);
        expect(span.attributes['dispatch.endpoint.id']).toBe(endpoint.id);
      }
      expect(byNumber[0]!.attributes).toMatchObject({
        'dispatch.attempt.number': 1,
        'dispatch.attempt.outcome': 'failed',
        'http.response.status_code': 500,
        'error.type': 'http_status',
      });
      expect(byNumber[0]!.status.code).toBe(SpanStatusCode.ERROR);
      expect(byNumber[1]!.attributes).toMatchObject({
        'dispatch.attempt.number': 2,
        'dispatch.attempt.outcome': 'succeeded',
        'http.response.status_code': 204,
      });
    } finally {
      await receiver.close();
    }
  });
});
