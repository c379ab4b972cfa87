import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreatePortalSessionDocument, type DispatchClient } from '../../packages/client/src/index.ts';
import { inTransaction } from '../../src/domain/context.ts';
import { OPERATIONAL_EVENT_TYPES, recordOperationalEvent } from '../../src/domain/operational-events.ts';
import { createDeliveryApp, createEndpoint, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { eventually, type Receiver, type Reply, startReceiver } from '../support/receiver.ts';

/**
 * Operational events reach an operator's own endpoint (a receiver on
 * 127.0.0.1) as signed webhooks of the workspace's operational app, one test
 * per trigger. DISPATCH_FAILING_AFTER_SECONDS and
 * DISPATCH_DISABLE_AFTER_SECONDS are short so the failing and auto-disable
 * triggers happen within seconds.
 */

interface OpsEvent {
  type: string;
  timestamp: string;
  data: {
    endpoint: { id: string; appId: string; recipientId: string; url: string; disabled: boolean };
    [key: string]: unknown;
  };
}

const ENABLE = `mutation { enableOperationalEvents { id name operational eventTypes { name description schema } } }`;

let t: TestDispatch;
let ops: Receiver;
let opsSecret: string;
let opsAppId: string;

/** The operational events the operator's receiver got, verified with the endpoint's secret. */
function opsEvents(): OpsEvent[] {
  return ops.received.map((r) => {
    const headers = {
      'webhook-id': String(r.headers['webhook-id']),
      'webhook-timestamp': String(r.headers['webhook-timestamp']),
      'webhook-signature': String(r.headers['webhook-signature']),
    };
    return new Webhook(opsSecret).verify(r.body, headers) as OpsEvent;
  });
}

function eventFor(type: string, endpointId: string, timeoutMs = 15_000): Promise<OpsEvent> {
  return eventually(async () => opsEvents().find((e) => e.type === type && e.data.endpoint.id === endpointId), {
    timeoutMs,
  });
}

/** A receiver answering `reply` to everything. */
const answering = (reply: Reply) => startReceiver([], reply);

beforeAll(async () => {
  t = await startTestDispatch({ DISPATCH_FAILING_AFTER_SECONDS: '1', DISPATCH_DISABLE_AFTER_SECONDS: '4' });
  const enabled = await t.client.raw<{ enableOperationalEvents: { id: string } }>(ENABLE);
  opsAppId = enabled.data!.enableOperationalEvents.id;
  ops = await startReceiver();
  const endpoint = await createEndpoint(t.client, { appId: opsAppId, recipientId: 'operator', url: ops.url });
  opsSecret = endpoint.secret;
});

afterAll(async () => {
  await ops?.close();
  await t?.stop();
});

describe('turning operational events on', () => {
  it('creates one operational app per workspace, with the catalog (descriptions, JSON Schemas with examples)', async () => {
    const again = await t.client.raw<{
      enableOperationalEvents: {
        id: string;
        operational: boolean;
        eventTypes: { name: string; description: string; schema: { examples: unknown[] } }[];
      };
    }>(ENABLE);
    const app = again.data!.enableOperationalEvents;
    expect(app.id).toBe(opsAppId);
    expect(app.operational).toBe(true);
    expect(app.eventTypes.map((e) => e.name).sort()).toEqual(Object.keys(OPERATIONAL_EVENT_TYPES).sort());
    for (const type of app.eventTypes) {
      expect(type.description.length).toBeGreaterThan(20);
      expect(type.schema.examples).toHaveLength(1);
    }
    const found = await t.client.raw<{ operationalApp: { id: string } }>('{ operationalApp { id } }');
    expect(found.data!.operationalApp.id).toBe(opsAppId);
  });

  it("refuses endpoints of another recipient in the operational app, and a portal token's attempt to turn it on", async () => {
    const other = await t.client.raw(
      'mutation($a: ID!) { createEndpoint(input: {appId: $a, recipientId: "someone", url: "http://127.0.0.1:9/x"}) { id } }',
      { a: opsAppId },
    );
    expect(other.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    const appId = await createDeliveryApp(t.client);
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_portal_refused' },
    });
    const refused = await t.clientFor(createPortalSession.token).raw(ENABLE);
    expect(refused.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
  });
});

describe('triggers in delivery', () => {
  it('endpoint.disabled (reason gone) when an endpoint answers 410, signed with the operational endpoint secret', async () => {
    const receiver = await answering({ status: 410 });
    try {
      const appId = await createDeliveryApp(t.client);
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_gone', url: receiver.url });
      await send(t.client, { appId, recipientId: 'customer_gone' });
      const event = await eventFor('endpoint.disabled', endpoint.id);
      expect(event.data).toMatchObject({
        reason: 'gone',
        detail: 'the endpoint answered 410 Gone',
        changedBy: 'dispatch',
        endpoint: { id: endpoint.id, appId, recipientId: 'customer_gone', url: receiver.url, disabled: true },
      });
    } finally {
      await receiver.close();
    }
  });

  it('endpoint.failing once per run of failures, then endpoint.disabled (reason failing)', async () => {
    const receiver = await answering({ status: 500, body: 'down' });
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1] });
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_failing', url: receiver.url });
      await send(t.client, { appId, recipientId: 'customer_failing' });
      const failing = await eventFor('endpoint.failing', endpoint.id);
      expect(failing.data).toMatchObject({
        endpoint: { id: endpoint.id, disabled: false },
        lastAttempt: { responseStatusCode: 500, errorKind: 'http_status' },
      });
      const since = Date.parse(failing.data.failingSince as string);
      expect(Date.parse(failing.data.disableAt as string) - since).toBe(4_000);
      const disabled = await eventFor('endpoint.disabled', endpoint.id);
      expect(disabled.data).toMatchObject({ reason: 'failing', changedBy: 'dispatch', endpoint: { disabled: true } });
      expect(disabled.data.failingSince).toBe(failing.data.failingSince);
      // More than one failed try came after the threshold, and still one endpoint.failing.
      expect(receiver.received.length).toBeGreaterThanOrEqual(3);
      expect(
        opsEvents().filter((e) => e.type === 'endpoint.failing' && e.data.endpoint.id === endpoint.id),
      ).toHaveLength(1);
    } finally {
      await receiver.close();
    }
  });

  it('message.attempt.exhausted when a delivery uses up its schedule; recover.completed when a recovery has queued everything', async () => {
    const receiver = await startReceiver([], { status: 503 });
    try {
      const appId = await createDeliveryApp(t.client, { retrySchedule: [1] });
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_exhausted', url: receiver.url });
      const message = await send(t.client, { appId, recipientId: 'customer_exhausted', messageId: 'inv_exhausted' });
      const exhausted = await eventFor('message.attempt.exhausted', endpoint.id);
      expect(exhausted.data).toMatchObject({
        messageId: message.id,
        messageUid: 'inv_exhausted',
        eventType: 'invoice.paid',
        attemptCount: 2,
        lastAttempt: { responseStatusCode: 503 },
        endpoint: { id: endpoint.id, recipientId: 'customer_exhausted' },
      });
      await settled(t.dispatch.db.pool, message.id, ['FAILED']);

      const recovered = await t.client.raw<{ recoverEndpoint: { queued: number } }>(
        'mutation($e: ID!, $s: DateTime!) { recoverEndpoint(input: {endpointId: $e, since: $s}) { queued } }',
        { e: endpoint.id, s: new Date(Date.now() - 3_600_000).toISOString() },
      );
      expect(recovered.data?.recoverEndpoint.queued).toBe(1);
      const completed = await eventFor('recover.completed', endpoint.id);
      expect(completed.data).toMatchObject({ queued: 1, endpoint: { id: endpoint.id } });
    } finally {
      await receiver.close();
    }
  });
});

describe('changes through the API', () => {
  let portal: DispatchClient;
  let appId: string;

  beforeAll(async () => {
    appId = await createDeliveryApp(t.client);
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_portal' },
    });
    portal = t.clientFor(createPortalSession.token);
  });

  it("endpoint.created / updated / deleted for a customer's changes in the portal, not for the operator's", async () => {
    const byOperator = await createEndpoint(t.client, {
      appId,
      recipientId: 'customer_portal',
      url: 'http://127.0.0.1:9/operator',
    });
    await t.client.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, description: "ops"}) { id } }', {
      id: byOperator.id,
    });
    const byCustomer = await createEndpoint(portal, {
      appId,
      recipientId: 'customer_portal',
      url: 'http://127.0.0.1:9/customer',
    });
    const created = await eventFor('endpoint.created', byCustomer.id);
    expect(created.data).toMatchObject({
      changedBy: 'customer',
      endpoint: { id: byCustomer.id, url: 'http://127.0.0.1:9/customer', recipientId: 'customer_portal' },
    });

    await portal.raw(
      'mutation($id: ID!) { updateEndpoint(input: {id: $id, url: "http://127.0.0.1:9/moved"}) { id } }',
      {
        id: byCustomer.id,
      },
    );
    const updated = await eventFor('endpoint.updated', byCustomer.id);
    expect(updated.data).toMatchObject({ changes: ['url'], endpoint: { url: 'http://127.0.0.1:9/moved' } });

    await portal.raw('mutation($id: ID!) { deleteEndpoint(input: {id: $id}) { id } }', { id: byCustomer.id });
    const deleted = await eventFor('endpoint.deleted', byCustomer.id);
    expect(deleted.data).toMatchObject({ changedBy: 'customer', endpoint: { id: byCustomer.id } });

    // Events arrive in order for one endpoint; everything of byOperator came before byCustomer's.
    expect(opsEvents().filter((e) => e.data.endpoint.id === byOperator.id)).toEqual([]);
  });

  it('endpoint.disabled (reason manual) and endpoint.enabled, by the customer or the operator', async () => {
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'customer_portal',
      url: 'http://127.0.0.1:9/toggle',
    });
    await portal.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: true}) { id } }', {
      id: endpoint.id,
    });
    const disabled = await eventFor('endpoint.disabled', endpoint.id);
    expect(disabled.data).toMatchObject({ reason: 'manual', changedBy: 'customer', endpoint: { disabled: true } });
    await t.client.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: false}) { id } }', {
      id: endpoint.id,
    });
    const enabled = await eventFor('endpoint.enabled', endpoint.id);
    expect(enabled.data).toMatchObject({ changedBy: 'operator', endpoint: { disabled: false } });
    // Setting what is already set changes nothing and reports nothing.
    await t.client.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: false}) { id } }', {
      id: endpoint.id,
    });
    const later = await createEndpoint(portal, { appId, recipientId: 'customer_portal', url: 'http://127.0.0.1:9/l' });
    await eventFor('endpoint.created', later.id);
    expect(
      opsEvents()
        .filter((e) => e.data.endpoint.id === endpoint.id)
        .map((e) => e.type)
        // endpoint.updated and endpoint.disabled are two messages of one change, delivered concurrently.
        .sort(),
    ).toEqual(['endpoint.disabled', 'endpoint.enabled', 'endpoint.updated']);
  });
});

describe('recording', () => {
  it('records nothing for a change that rolled back', async () => {
    const appId = await createDeliveryApp(t.client);
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'customer_rollback', url: ops.url });
    const pool = t.dispatch.db.pool;
    // The deliveries the event creates are handed to the queue in the same transaction (and rolled back with it).
    const queued: string[] = [];
    const queue = {
      deliveriesCreated: async (_sql: unknown, deliveries: { id: string }[]) => {
        queued.push(...deliveries.map((d) => d.id));
      },
    };
    let recorded: string | null = null;
    await expect(
      inTransaction(pool, async (sql) => {
        recorded = await recordOperationalEvent(sql, queue, {
          type: 'endpoint.disabled',
          endpointId: endpoint.id,
          data: { reason: 'manual', detail: 'rolled back', changedBy: 'operator' },
        });
        throw new Error('the change failed');
      }),
    ).rejects.toThrow('the change failed');
    expect(recorded).toMatch(/^msg_/);
    expect(queued).toHaveLength(1);
    const { rows } = await pool.query(`SELECT id FROM "Message" WHERE id = $1`, [recorded]);
    expect(rows).toEqual([]);
    const deliveries = await pool.query(`SELECT id FROM "Delivery" WHERE id = ANY($1::text[])`, [queued]);
    expect(deliveries.rows).toEqual([]);

    // A committed one after it arrives, and it is the only one about this endpoint.
    await t.client.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: true}) { id } }', {
      id: endpoint.id,
    });
    await eventFor('endpoint.disabled', endpoint.id);
    expect(opsEvents().filter((e) => e.data.endpoint.id === endpoint.id)).toHaveLength(1);
  });

  it("records nothing about the operational app's own endpoints", async () => {
    const gone = await answering({ status: 410 });
    try {
      const endpoint = await createEndpoint(t.client, { appId: opsAppId, recipientId: 'operator', url: gone.url });
      // The next event reaches this endpoint too: it answers 410 and is disabled.
      const appId = await createDeliveryApp(t.client);
      const trigger = await createEndpoint(t.client, { appId, recipientId: 'x', url: 'http://127.0.0.1:9/y' });
      await t.client.raw('mutation($id: ID!) { updateEndpoint(input: {id: $id, disabled: true}) { id } }', {
        id: trigger.id,
      });
      await eventually(async () => {
        const { rows } = await t.dispatch.db.pool.query(`SELECT disabled FROM "Endpoint" WHERE id = $1`, [endpoint.id]);
        return rows[0]?.disabled ? true : undefined;
      });
      const { rows } = await t.dispatch.db.pool.query(
        `SELECT count(*)::int AS n FROM "Message" WHERE "appId" = $1 AND data->'endpoint'->>'id' = $2`,
        [opsAppId, endpoint.id],
      );
      expect(rows[0].n).toBe(0);
    } finally {
      await gone.close();
    }
  });
});
