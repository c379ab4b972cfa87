import dns from 'node:dns/promises';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyAddress } from '../../src/webhooks/outbound-safety.ts';
import { attemptsOf, createDeliveryApp, createEndpoint, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

// Dispatch as it runs by default: no DISPATCH_ALLOW_NETWORKS, so loopback is not reachable.
describe('outbound safety of deliveries', () => {
  let t: TestDispatch;
  let appId: string;
  let r: Receiver;

  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ALLOW_NETWORKS: '' });
    appId = await createDeliveryApp(t.client, { retrySchedule: [1] });
    r = await startReceiver();
  });
  afterAll(async () => {
    await t.stop();
    await r.close();
  });

  it('refuses a literal private address when the endpoint is saved', async () => {
    await expectError(
      t.client,
      'UNSAFE_URL',
      'mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }',
      {
        input: { appId, recipientId: 'literal', url: r.url },
      },
    );
  });

  it('refuses a literal loopback address at send time too (an endpoint saved while it was allowed): unsafe_address, nothing sent', async () => {
    // Saved before the operator closed loopback: written directly, as the API would refuse it now.
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'literal',
      url: 'https://example.com/placeholder',
    });
    await t.dispatch.db.pool.query(`UPDATE "Endpoint" SET url = $2 WHERE id = $1`, [endpoint.id, r.url]);
    const message = await send(t.client, { appId, recipientId: 'literal' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery.status).toBe('FAILED');
    const attempts = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(attempts.map((a) => a.errorKind)).toEqual(['unsafe_address', 'unsafe_address']);
    expect(attempts[0]!.error).toMatch(/loopback/);
    expect(r.received).toHaveLength(0);
  });

  it('refuses a host name that resolves to a non-public address, at connect time (DNS rebinding)', async () => {
    // This machine's own name resolves to loopback (or, in a container, a private address).
    const hostname = os.hostname();
    const { address } = await dns.lookup(hostname);
    expect(classifyAddress(address), `${hostname} resolves to ${address}`).not.toBeNull();
    const url = r.url.replace('127.0.0.1', hostname);
    // A name passes the check when saved; only its resolved address tells.
    await createEndpoint(t.client, { appId, recipientId: 'by-name', url });
    const message = await send(t.client, { appId, recipientId: 'by-name' });
    const delivery = await settled(t.dispatch.db.pool, message.id);
    expect(delivery.status).toBe('FAILED');
    const attempts = await attemptsOf(t.dispatch.db.pool, delivery.id);
    expect(attempts.map((a) => [a.errorKind, a.url])).toEqual([
      ['unsafe_address', url],
      ['unsafe_address', url],
    ]);
    expect(attempts[0]!.error).toContain(`${hostname} resolves to ${address}`);
    expect(r.received).toHaveLength(0);
  });
});
