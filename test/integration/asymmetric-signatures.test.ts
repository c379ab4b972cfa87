import { createPublicKey, verify } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import nacl from 'tweetnacl';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DispatchClient } from '../../packages/client/src/index.ts';
import { publicKeyOf } from '../../src/webhooks/signing.ts';
import { createDeliveryApp, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';
import { type Received, type Receiver, startReceiver } from '../support/receiver.ts';

const ENDPOINT_FIELDS = 'id url secret publicKey signatureScheme';

async function gql<T>(client: DispatchClient, query: string, variables?: Record<string, unknown>): Promise<T> {
  const result = await client.raw(query, variables);
  expect(result.errors, JSON.stringify(result.errors)).toBeUndefined();
  return result.data as T;
}

interface EndpointOut {
  id: string;
  url: string;
  secret: string;
  publicKey: string | null;
  signatureScheme: 'HMAC_SHA256' | 'ED25519';
}

const createEndpoint = async (client: DispatchClient, input: Record<string, unknown>) =>
  (
    await gql<{ createEndpoint: EndpointOut }>(
      client,
      `mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { ${ENDPOINT_FIELDS} } }`,
      { input },
    )
  ).createEndpoint;

const rotate = async (client: DispatchClient, input: Record<string, unknown>) =>
  (
    await gql<{ rotateEndpointSecret: EndpointOut }>(
      client,
      `mutation ($input: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $input) { ${ENDPOINT_FIELDS} } }`,
      { input },
    )
  ).rotateEndpointSecret;

/** The signed content and the v1a / v1 signatures of a webhook as the receiver got it. */
function signaturesOf(got: Received) {
  const id = String(got.headers['webhook-id']);
  const timestamp = String(got.headers['webhook-timestamp']);
  const parts = String(got.headers['webhook-signature']).split(' ');
  return {
    signed: Buffer.from(`${id}.${timestamp}.${got.body}`, 'utf8'),
    versions: parts.map((part) => part.split(',')[0]),
    v1a: parts.filter((part) => part.startsWith('v1a,')).map((part) => Buffer.from(part.slice(4), 'base64')),
    headers: { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': parts.join(' ') },
  };
}

/** Whether any v1a signature of the webhook verifies with `publicKey`, by Node's crypto and by tweetnacl (both must agree). */
function verifiesWith(got: Received, publicKey: string): boolean {
  const raw = Buffer.from(publicKey.slice('whpk_'.length), 'base64');
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
  const { signed, v1a } = signaturesOf(got);
  const byNode = v1a.some((signature) => verify(null, signed, key, signature));
  const byNacl = v1a.some((signature) => nacl.sign.detached.verify(signed, signature, raw));
  expect(byNacl).toBe(byNode);
  return byNode;
}

describe('asymmetric signatures (Standard Webhooks v1a, ed25519)', () => {
  let t: TestDispatch;
  let appId: string;
  const receivers: Receiver[] = [];
  const receiver = async () => {
    const r = await startReceiver();
    receivers.push(r);
    return r;
  };
  const storedKeys = async (endpointId: string) =>
    t.dispatch.db.prisma.endpointSecret.findMany({ where: { endpointId }, orderBy: { id: 'asc' } });

  beforeAll(async () => {
    t = await startTestDispatch();
    appId = await createDeliveryApp(t.client, { retrySchedule: [1], attemptTimeoutMs: 2_000 });
  });
  afterAll(async () => {
    await t.stop();
    await Promise.all(receivers.map((r) => r.close()));
  });

  it("delivers a webhook signed v1a that Node crypto and tweetnacl verify with the endpoint's whpk_ public key", async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'ed',
      url: r.url,
      signatureScheme: 'ED25519',
    });
    expect(endpoint.signatureScheme).toBe('ED25519');
    expect(endpoint.publicKey).toMatch(/^whpk_[A-Za-z0-9+/]{43}=$/);
    // What the receiver verifies with: the public key, never the private one.
    expect(endpoint.secret).toBe(endpoint.publicKey);
    const [stored] = await storedKeys(endpoint.id);
    expect(stored!.secret).toMatch(/^whsk_/);
    expect(publicKeyOf(stored!.secret)).toBe(endpoint.publicKey);

    const message = await send(t.client, {
      appId,
      recipientId: 'ed',
      data: { amount: 42, note: 'crème ✓' },
      messageId: 'order.1.paid',
    });
    const got = await r.nth(1);
    expect(signaturesOf(got).versions).toEqual(['v1a']);
    expect(got.headers['webhook-id']).toBe('order.1.paid');
    expect(verifiesWith(got, endpoint.publicKey!)).toBe(true);
    // The signature covers the body: one changed byte and neither verifier accepts it.
    expect(verifiesWith({ ...got, body: got.body.replace('42', '43') }, endpoint.publicKey!)).toBe(false);
    // Another key pair's public key does not verify it.
    const other = await createEndpoint(t.client, { appId, recipientId: 'ed', url: r.url, signatureScheme: 'ED25519' });
    expect(other.publicKey).not.toBe(endpoint.publicKey);
    expect(verifiesWith(got, other.publicKey!)).toBe(false);
    expect((await settled(t.dispatch.db.pool, message.id, ['SUCCEEDED'], endpoint.id)).status).toBe('SUCCEEDED');
  });

  it("gives new endpoints the app's scheme, and never shows a whsk_ private key through the API", async () => {
    const edApp = (
      await gql<{ createApp: { id: string; signatureScheme: string } }>(
        t.client,
        'mutation { createApp(input: { name: "Asymmetric", signatureScheme: ED25519 }) { id signatureScheme } }',
      )
    ).createApp;
    expect(edApp.signatureScheme).toBe('ED25519');
    const byDefault = await createEndpoint(t.client, {
      appId: edApp.id,
      recipientId: 'c1',
      url: 'http://127.0.0.1:9/x',
    });
    expect(byDefault.signatureScheme).toBe('ED25519');
    const chosen = await createEndpoint(t.client, {
      appId: edApp.id,
      recipientId: 'c1',
      url: 'http://127.0.0.1:9/y',
      signatureScheme: 'HMAC_SHA256',
    });
    expect(chosen).toMatchObject({ signatureScheme: 'HMAC_SHA256', publicKey: null });
    expect(chosen.secret).toMatch(/^whsec_/);

    // The operator changes the default for endpoints created from now on.
    const updated = await gql<{ updateApp: { signatureScheme: string } }>(
      t.client,
      'mutation ($id: ID!) { updateApp(input: { id: $id, signatureScheme: HMAC_SHA256 }) { signatureScheme } }',
      { id: edApp.id },
    );
    expect(updated.updateApp.signatureScheme).toBe('HMAC_SHA256');
    const later = await createEndpoint(t.client, { appId: edApp.id, recipientId: 'c1', url: 'http://127.0.0.1:9/z' });
    expect(later.signatureScheme).toBe('HMAC_SHA256');
    expect(
      (await createEndpoint(t.client, { appId: edApp.id, recipientId: 'c1', url: 'http://127.0.0.1:9/w' })).publicKey,
    ).toBeNull();

    // Every way of reading an endpoint, as the operator and as the recipient's portal token.
    const { createPortalSession } = await gql<{ createPortalSession: { token: string } }>(
      t.client,
      'mutation ($a: ID!) { createPortalSession(input: { appId: $a, recipientId: "c1" }) { token } }',
      { a: edApp.id },
    );
    const portal = t.clientFor(createPortalSession.token);
    const portalMade = await createEndpoint(portal, {
      appId: edApp.id,
      recipientId: 'c1',
      url: 'http://127.0.0.1:9/portal',
      signatureScheme: 'ED25519',
    });
    expect(portalMade.publicKey).toMatch(/^whpk_/);
    const rotated = await rotate(portal, { id: portalMade.id, gracePeriodSeconds: 60 });
    expect(rotated.signatureScheme).toBe('ED25519');
    const read = `query ($a: ID!, $id: ID!) {
      app(id: $a) { endpoints(first: 100) { nodes { ${ENDPOINT_FIELDS} } } recipient(recipientId: "c1") { endpoints { nodes { ${ENDPOINT_FIELDS} } } } }
      endpoint(id: $id) { ${ENDPOINT_FIELDS} }
      node(id: $id) { ... on Endpoint { ${ENDPOINT_FIELDS} } }
    }`;
    for (const client of [t.client, portal]) {
      for (const id of [byDefault.id, portalMade.id]) {
        const text = JSON.stringify(await gql(client, read, { a: edApp.id, id }));
        expect(text).toContain('whpk_');
        expect(text).not.toContain('whsk_');
      }
    }
    // The schema has no field that could carry the private key.
    const introspection = JSON.stringify(
      await gql(t.client, '{ __type(name: "Endpoint") { fields { name description } } }'),
    );
    expect(introspection).not.toMatch(/privateKey/i);
  });

  it('keeps the old key pair signing beside the new one for the grace period, and only the new one after', async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'ed-rotating',
      url: r.url,
      signatureScheme: 'ED25519',
    });
    const rotated = await rotate(t.client, { id: endpoint.id, gracePeriodSeconds: 3600 });
    expect(rotated.signatureScheme).toBe('ED25519');
    expect(rotated.publicKey).not.toBe(endpoint.publicKey);

    await send(t.client, { appId, recipientId: 'ed-rotating' });
    const during = await r.nth(1);
    expect(signaturesOf(during).versions).toEqual(['v1a', 'v1a']);
    expect(verifiesWith(during, endpoint.publicKey!)).toBe(true);
    expect(verifiesWith(during, rotated.publicKey!)).toBe(true);

    const again = await rotate(t.client, { id: endpoint.id, gracePeriodSeconds: 0 });
    await send(t.client, { appId, recipientId: 'ed-rotating' });
    const after = await r.nth(2);
    expect(signaturesOf(after).versions).toEqual(['v1a']);
    expect(verifiesWith(after, again.publicKey!)).toBe(true);
    expect(verifiesWith(after, rotated.publicKey!)).toBe(false);
    expect(verifiesWith(after, endpoint.publicKey!)).toBe(false);
  });

  it('moves an endpoint from a whsec_ secret to a key pair by rotation, sending v1 and v1a during the grace period', async () => {
    const r = await receiver();
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'switching', url: r.url });
    expect(endpoint).toMatchObject({ signatureScheme: 'HMAC_SHA256', publicKey: null });
    const switched = await rotate(t.client, { id: endpoint.id, gracePeriodSeconds: 3600, signatureScheme: 'ED25519' });
    expect(switched.signatureScheme).toBe('ED25519');
    expect(switched.secret).toBe(switched.publicKey);

    await send(t.client, { appId, recipientId: 'switching' });
    const during = await r.nth(1);
    const { versions, headers } = signaturesOf(during);
    expect(versions).toEqual(['v1a', 'v1']);
    // A receiver still on the shared secret verifies with the reference library; one on the key pair, with ed25519.
    expect(() => new Webhook(endpoint.secret).verify(during.body, headers)).not.toThrow();
    expect(verifiesWith(during, switched.publicKey!)).toBe(true);

    // Rotating without naming a scheme keeps the newest key's.
    const next = await rotate(t.client, { id: endpoint.id, gracePeriodSeconds: 0 });
    expect(next.signatureScheme).toBe('ED25519');
    await send(t.client, { appId, recipientId: 'switching' });
    const after = await r.nth(2);
    expect(signaturesOf(after).versions).toEqual(['v1a']);
    expect(verifiesWith(after, next.publicKey!)).toBe(true);
    expect(() => new Webhook(endpoint.secret).verify(after.body, signaturesOf(after).headers)).toThrow();
  });

  it('refuses an unknown scheme as a bad input', async () => {
    await expectError(
      t.client,
      'GRAPHQL_VALIDATION_FAILED',
      'mutation { createApp(input: { name: "x", signatureScheme: RSA }) { id } }',
    );
  });
});
