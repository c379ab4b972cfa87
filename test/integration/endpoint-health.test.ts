import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DELIVERY_QUEUE, nextScheduledTriesSql, QUEUE_SCHEMA, WAITING_INDEX } from '../../src/delivery/queue.ts';
import { LATENCY_BOUNDS_MS } from '../../src/domain/endpoint-health.ts';
import { createDeliveryApp, createEndpoint, deliveriesOf, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { subscribeWs, wsClient } from '../support/live.ts';
import { eventually, startReceiver } from '../support/receiver.ts';

/** Endpoint.health, Endpoint.stats and endpointHealthChanged, from real deliveries to a receiver on 127.0.0.1. */

interface Health {
  status: string;
  failingSince: string | null;
  disabledReason: string | null;
  lastError: { responseStatusCode: number | null; errorKind: string | null } | null;
  nextRetryAt: string | null;
}
interface Row {
  succeeded: number;
  failed: number;
  total: number;
  successRate: number | null;
  p50Ms: number | null;
  p95Ms: number | null;
  start: string;
}

const HEALTH = `query($id: ID!) { endpoint(id: $id) { health {
  status failingSince disabledReason nextRetryAt lastError { responseStatusCode errorKind } } } }`;
const STATS = `query($id: ID!, $since: DateTime!, $until: DateTime, $bucket: EndpointStatsBucket) { endpoint(id: $id) {
  stats(since: $since, until: $until, bucket: $bucket) { since until bucket
    summary { succeeded failed total successRate p50Ms p95Ms start }
    buckets { succeeded failed total successRate p50Ms p95Ms start } } } }`;

let t: TestDispatch;
beforeAll(async () => {
  t = await startTestDispatch();
});
afterAll(async () => t?.stop());

async function health(id: string): Promise<Health> {
  const result = await t.client.raw<{ endpoint: { health: Health } }>(HEALTH, { id });
  expect(result.errors).toBeUndefined();
  return result.data!.endpoint.health;
}

describe('Endpoint.stats', () => {
  it('latency buckets in SQL and in TypeScript have the same bounds', async () => {
    for (const [i, bound] of LATENCY_BOUNDS_MS.entries()) {
      const { rows } = await t.dispatch.db.pool.query<{ below: number; at: number }>(
        'SELECT dispatch_endpoint_stat_bucket($1 - 1) AS below, dispatch_endpoint_stat_bucket($1) AS at',
        [bound],
      );
      expect(rows[0]).toEqual({ below: i, at: i + 1 });
    }
  });

  it('counts attempts by outcome per bucket, with success rate and p50/p95, as attempts finish', async () => {
    const receiver = await startReceiver([
      { status: 200 },
      { status: 200, delayMs: 300 },
      { status: 200 },
      { status: 500 },
      { status: 500 },
    ]);
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [3600] });
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_stats', url: receiver.url });
      // One at a time, so the receiver's replies go to them in order.
      for (let i = 0; i < 5; i++) {
        const message = await send(t.client, { appId, recipientId: 'customer_stats', messageId: `stat-${i}` });
        await settled(t.dispatch.db.pool, message.id, i < 3 ? ['SUCCEEDED'] : ['PENDING']);
        await receiver.nth(i + 1);
      }
      const since = new Date(Date.now() - 3_600_000).toISOString();
      const stats = await eventually(async () => {
        const result = await t.client.raw<{ endpoint: { stats: { summary: Row; buckets: Row[]; bucket: string } } }>(
          STATS,
          { id: endpoint.id, since, bucket: 'FIVE_MINUTES' },
        );
        const s = result.data?.endpoint.stats;
        return s && s.summary.total === 5 ? s : undefined;
      });
      expect(stats.bucket).toBe('FIVE_MINUTES');
      expect(stats.summary).toMatchObject({ succeeded: 3, failed: 2, total: 5, successRate: 0.6 });
      expect(stats.summary.p95Ms).toBeGreaterThanOrEqual(200);
      expect(stats.summary.p50Ms).toBeLessThan(stats.summary.p95Ms!);
      // 12 or 13 buckets of 5 minutes in the hour (since rounds down), empty ones included.
      expect(stats.buckets.length).toBeGreaterThanOrEqual(12);
      expect(stats.buckets.reduce((n, b) => n + b.total, 0)).toBe(5);
      expect(stats.buckets[0]).toMatchObject({ total: 0, successRate: null, p50Ms: null });
    } finally {
      await receiver.close();
    }
  });

  it('refuses ranges of more than 1000 buckets and an inverted range (BAD_USER_INPUT)', async () => {
    const appId = await createDeliveryApp(t.client);
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_r', url: 'http://127.0.0.1:9/x' });
    const tooMany = await t.client.raw(STATS, {
      id: endpoint.id,
      since: new Date(Date.now() - 5 * 86_400_000).toISOString(),
      bucket: 'FIVE_MINUTES',
    });
    expect(tooMany.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const inverted = await t.client.raw(STATS, {
      id: endpoint.id,
      since: new Date().toISOString(),
      until: new Date(Date.now() - 1000).toISOString(),
    });
    expect(inverted.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });
});

describe('Endpoint.health and endpointHealthChanged', () => {
  it('HEALTHY, then FAILING with since, last error and next retry, then HEALTHY again, then DISABLED; each change streamed', async () => {
    const receiver = await startReceiver([], { status: 200 });
    const failingReceiver = await startReceiver([], { status: 502 });
    const ws = wsClient(t.url, t.apiKey);
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [5, 3600] });
      const endpoint = await createEndpoint(t.client, {
        appId,
        recipientId: 'customer_health',
        url: failingReceiver.url,
      });
      const feed = subscribeWs<{ endpointHealthChanged: { id: string; health: { status: string } } }>(
        ws,
        'subscription($a: ID!) { endpointHealthChanged(appId: $a, recipientId: "customer_health") { id health { status } } }',
        { a: appId },
      );
      await t.dispatch.live.whenListenersAdded(1);
      expect(await health(endpoint.id)).toMatchObject({ status: 'HEALTHY', failingSince: null, lastError: null });

      const first = await send(t.client, { appId, recipientId: 'customer_health', messageId: 'h-1' });
      expect((await feed.nextData()).endpointHealthChanged).toEqual({ id: endpoint.id, health: { status: 'FAILING' } });
      const failing = await health(endpoint.id);
      expect(failing).toMatchObject({
        status: 'FAILING',
        lastError: { responseStatusCode: 502, errorKind: 'http_status' },
      });
      const delivery = await settled(t.dispatch.db.pool, first.id, ['PENDING']);
      expect(failing.nextRetryAt).toBe(delivery.nextAttemptAt!.toISOString());

      // The retry succeeds once the receiver is back: the run of failures ends.
      await t.client.raw('mutation($id: ID!, $u: String!) { updateEndpoint(input: {id: $id, url: $u}) { id } }', {
        id: endpoint.id,
        u: receiver.url,
      });
      expect((await feed.nextData(15_000)).endpointHealthChanged.health.status).toBe('HEALTHY');
      expect(await health(endpoint.id)).toMatchObject({ status: 'HEALTHY', nextRetryAt: null, lastError: null });

      await t.client.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: true}) { id } }', {
        id: endpoint.id,
      });
      expect((await feed.nextData()).endpointHealthChanged.health.status).toBe('DISABLED');
      expect(await health(endpoint.id)).toMatchObject({ status: 'DISABLED', disabledReason: 'disabled by user' });
    } finally {
      await ws.dispose();
      await receiver.close();
      await failingReceiver.close();
    }
  });

  it('nextRetryAt of each FAILING endpoint in a list is its own, read from the queue by one index probe per endpoint', async () => {
    const failingReceiver = await startReceiver([], { status: 503 });
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [3600], eventTypes: ['a.done', 'b.done'] });
      const recipientId = 'customer_next_retry';
      const endpoints = [
        await createEndpoint(t.client, { appId, recipientId, url: `${failingReceiver.url}/a`, eventTypes: ['a.done'] }),
        await createEndpoint(t.client, { appId, recipientId, url: `${failingReceiver.url}/b`, eventTypes: ['b.done'] }),
      ];
      const waiting = [];
      for (const [i, eventType] of ['a.done', 'b.done', 'a.done'].entries()) {
        const message = await send(t.client, { appId, recipientId, messageId: `next-${i}`, eventType });
        // Pending after its first try failed (before it, it is pending too, due now).
        waiting.push(
          await eventually(async () => {
            const [row] = await deliveriesOf(t.dispatch.db.pool, message.id);
            return row?.status === 'PENDING' && row.attemptCount === 1 ? row : undefined;
          }),
        );
      }
      const result = await t.client.raw<{
        recipient: { endpoints: { nodes: { id: string; health: { status: string; nextRetryAt: string | null } }[] } };
      }>(
        `query($a: ID!, $r: String!) { recipient(appId: $a, recipientId: $r) {
          endpoints(first: 10) { nodes { id health { status nextRetryAt } } } } }`,
        { a: appId, r: recipientId },
      );
      expect(result.errors).toBeUndefined();
      const byId = new Map(result.data!.recipient.endpoints.nodes.map((n) => [n.id, n.health]));
      // The oldest delivery waiting on each endpoint: a's first message, b's only one.
      expect(byId.get(endpoints[0]!.id)).toEqual({
        status: 'FAILING',
        nextRetryAt: waiting[0]!.nextAttemptAt!.toISOString(),
      });
      expect(byId.get(endpoints[1]!.id)).toEqual({
        status: 'FAILING',
        nextRetryAt: waiting[1]!.nextAttemptAt!.toISOString(),
      });

      // The probe is an index scan of the queue's waiting tries, whatever the planner thinks of a small table.
      const pool = t.dispatch.db.pool;
      const { rows } = await pool.query<{ table_name: string }>(
        `SELECT table_name FROM ${QUEUE_SCHEMA}.queue WHERE name = $1`,
        [DELIVERY_QUEUE],
      );
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SET LOCAL enable_seqscan = off');
        await client.query('SET LOCAL enable_bitmapscan = off');
        const plan = await client.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN ${nextScheduledTriesSql(rows[0]!.table_name)}`,
          [endpoints.map((e) => e.id)],
        );
        expect(plan.rows.map((r) => r['QUERY PLAN']).join('\n')).toContain(WAITING_INDEX);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
    } finally {
      await failingReceiver.close();
    }
  });
});
