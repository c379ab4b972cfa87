import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import {
  attemptsOf,
  createDeliveryApp,
  createEndpoint,
  deliveriesOf,
  send,
  settled,
  useDeliveryApp,
} from '../support/delivery.ts';
import type { TestDispatch } from '../support/dispatch.ts';

describe('delivering a message', () => {
  let t: TestDispatch;
  let appId: string;
  const receiver = useDeliveryApp({ retrySchedule: [1, 1], attemptTimeoutMs: 2_000 }, (started) => {
    ({ t, appId } = started);
  });

  it('POSTs the event signed so the standardwebhooks library accepts it, with the custom headers, in well under a second', async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'signed',
      url: r.url,
      headers: { 'x-tenant': 'acme' },
    });
    const sentAt = Date.now();
    const message = await send(t.client, {
      appId,
      recipientId: 'signed',
      data: { amount: 42, note: 'crème ✓' },
      messageId: 'order.1234.paid',
    });
    const returnedAt = Date.now();
    const got = await r.nth(1);
    const latencyMs = got.at - returnedAt;
    console.log(
      `delivery latency on an idle system: ${latencyMs} ms after sendMessage returned (${got.at - sentAt} ms after it was called)`,
    );
    expect(latencyMs).toBeLessThan(1_000);

    expect(got.headers['content-type']).toBe('application/json');
    expect(got.headers['x-tenant']).toBe('acme');
    // The caller's id is the webhook-id, dots and all.
    expect(got.headers['webhook-id']).toBe('order.1234.paid');
    const payload = new Webhook(endpoint.secret).verify(got.body, {
      'webhook-id': String(got.headers['webhook-id']),
      'webhook-timestamp': String(got.headers['webhook-timestamp']),
      'webhook-signature': String(got.headers['webhook-signature']),
    });
    expect(payload).toEqual({
      type: 'invoice.paid',
      timestamp: message.createdAt,
      data: { amount: 42, note: 'crème ✓' },
    });
    expect(JSON.parse(got.body)).toEqual(payload);

    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery).toMatchObject({ status: 'SUCCEEDED', attemptCount: 1, nextAttemptAt: null });
    const [attempt] = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(attempt).toMatchObject({
      status: 'SUCCEEDED',
      trigger: 'SCHEDULED',
      responseStatusCode: 200,
      responseBody: 'ok',
      url: r.url,
      error: null,
    });
    expect(attempt!.durationMs).toBeGreaterThanOrEqual(0);
    expect(attempt!.finishedAt).toBeInstanceOf(Date);
  });

  it('retries 500, 500 then succeeds: 3 attempts with the same webhook-id, the delivery SUCCEEDED', async () => {
    const r = await receiver([{ status: 500, body: 'boom' }, { status: 500 }, { status: 200 }]);
    await createEndpoint(t.client, { appId, recipientId: 'flaky', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'flaky' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery).toMatchObject({ status: 'SUCCEEDED', attemptCount: 3, nextAttemptAt: null });
    const attempts = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(attempts.map((a) => [a.status, a.responseStatusCode, a.errorKind])).toEqual([
      ['FAILED', 500, 'http_status'],
      ['FAILED', 500, 'http_status'],
      ['SUCCEEDED', 200, null],
    ]);
    expect(attempts[0]!.responseBody).toBe('boom');
    expect(new Set(r.received.map((x) => x.headers['webhook-id']))).toEqual(new Set([message.id]));
    // One second apart, ±20 % jitter.
    expect(r.received[1]!.at - r.received[0]!.at).toBeGreaterThanOrEqual(750);
    expect(r.received[2]!.at - r.received[1]!.at).toBeGreaterThanOrEqual(750);
  });

  it('gives up after the schedule: 1 + 2 tries, then FAILED, and the endpoint is marked failing', async () => {
    const r = await receiver([], { status: 502 });
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'down', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'down' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery).toMatchObject({ status: 'FAILED', attemptCount: 3, nextAttemptAt: null });
    expect(r.received).toHaveLength(3);
    const row = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id: endpoint.id } });
    expect(row.failingSince).toBeInstanceOf(Date);
    expect(row.disabled).toBe(false);
  });

  it('honours Retry-After on 429 within the clamp (one to two scheduled delays)', async () => {
    const r = await receiver([{ status: 429, headers: { 'retry-after': '2' } }, { status: 200 }]);
    await createEndpoint(t.client, { appId, recipientId: 'limited', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'limited' });
    await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED']);
    // Scheduled 1 s ± 20 %, Retry-After asks 2 s, clamp allows up to twice the scheduled delay.
    const gap = r.received[1]!.at - r.received[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(1_550);
    expect(gap).toBeLessThan(3_500);
  });

  it('disables the endpoint at once on 410 and fails the delivery without retrying', async () => {
    const r = await receiver([], { status: 410 });
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'gone', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'gone' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery).toMatchObject({ status: 'FAILED', attemptCount: 1 });
    const row = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id: endpoint.id } });
    expect(row).toMatchObject({ disabled: true, disabledReason: 'the endpoint answered 410 Gone' });
    expect(row.disabledAt).toBeInstanceOf(Date);
    expect(r.received).toHaveLength(1);
  });

  it('does not follow a redirect: the attempt fails with errorKind redirect and the target sees nothing', async () => {
    const target = await receiver();
    const r = await receiver([], { status: 301, headers: { location: target.url } });
    await createEndpoint(t.client, { appId, recipientId: 'moved', url: r.url });
    const message = await send(t.client, { appId, recipientId: 'moved' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery.status).toBe('FAILED');
    const attempts = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(attempts.map((a) => [a.responseStatusCode, a.errorKind])).toEqual(Array(3).fill([301, 'redirect']));
    expect(target.received).toHaveLength(0);
  });

  it('times out an attempt at the app attemptTimeoutMs', async () => {
    const quick = await createDeliveryApp(t.client, { retrySchedule: [1], attemptTimeoutMs: 300 });
    const r = await receiver(['hang'], { status: 200 });
    await createEndpoint(t.client, { appId: quick, recipientId: 'slow', url: r.url });
    const message = await send(t.client, { appId: quick, recipientId: 'slow' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery).toMatchObject({ status: 'SUCCEEDED', attemptCount: 2 });
    const [first] = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(first).toMatchObject({ status: 'FAILED', errorKind: 'timeout', responseStatusCode: null });
    expect(first!.durationMs).toBeGreaterThanOrEqual(280);
    expect(first!.durationMs).toBeLessThan(2_000);
  });

  it('delivers only to endpoints whose filter matches, and nothing to a disabled endpoint', async () => {
    const all = await receiver();
    const paid = await receiver();
    const voided = await receiver();
    const disabled = await receiver();
    await createEndpoint(t.client, { appId, recipientId: 'filters', url: all.url });
    await createEndpoint(t.client, { appId, recipientId: 'filters', url: paid.url, eventTypes: ['invoice.paid'] });
    await createEndpoint(t.client, { appId, recipientId: 'filters', url: voided.url, eventTypes: ['invoice.voided'] });
    await createEndpoint(t.client, { appId, recipientId: 'filters', url: disabled.url, disabled: true });
    const message = await send(t.client, { appId, recipientId: 'filters', eventType: 'invoice.voided' });
    await voided.nth(1);
    await all.nth(1);
    const deliveries = await deliveriesOf(t.dispatch.db.pool, message.id);
    expect(deliveries).toHaveLength(2);
    await Promise.all(deliveries.map((d) => settled(t.dispatch.db.pool, message.id, ['SUCCEEDED'], d.endpointId)));
    expect(paid.received).toHaveLength(0);
    expect(disabled.received).toHaveLength(0);
    expect(JSON.parse(voided.received[0]!.body).type).toBe('invoice.voided');
  });

  it('counts attempts by outcome, their duration and the queue on /metrics', async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    expect(text).toMatch(/^dispatch_delivery_attempts_total\{outcome="succeeded",trigger="SCHEDULED"\} [1-9]\d*$/m);
    expect(text).toMatch(/^dispatch_delivery_attempts_total\{outcome="http_status",trigger="SCHEDULED"\} [1-9]\d*$/m);
    expect(text).toMatch(/^dispatch_delivery_attempts_total\{outcome="timeout",trigger="SCHEDULED"\} [1-9]\d*$/m);
    expect(text).toMatch(/^dispatch_delivery_attempt_duration_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^dispatch_delivery_first_attempt_latency_seconds_count [1-9]\d*$/m);
    expect(text).toMatch(/^dispatch_delivery_queue_jobs\{state="ready"\} \d+$/m);
    expect(text).toMatch(/^dispatch_delivery_endpoints_disabled_total\{reason="gone"\} 1$/m);
  });
});
