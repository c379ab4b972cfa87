import { createPublicKey, verify } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  generateKeyPair,
  generateSecret,
  isValidSecret,
  publicKeyOf,
  schemeOf,
  sign,
  signatureHeaders,
} from '../../src/webhooks/signing.ts';

// The published test vector of the Standard Webhooks reference libraries
// (standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts,
// "sign function works"; the same vector is in the Svix libraries).
const VECTOR = {
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  msgId: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
  timestamp: 1614265330,
  body: '{"test": 2432232314}',
  signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
};

const now = () => Math.floor(Date.now() / 1000);

describe('webhook signing', () => {
  it('reproduces the Standard Webhooks test vector exactly', () => {
    expect(
      sign({ msgId: VECTOR.msgId, timestamp: VECTOR.timestamp, body: VECTOR.body, secrets: [VECTOR.secret] }),
    ).toBe(VECTOR.signature);
  });

  it('signs like the standardwebhooks reference library', () => {
    const ours = sign({
      msgId: VECTOR.msgId,
      timestamp: VECTOR.timestamp,
      body: VECTOR.body,
      secrets: [VECTOR.secret],
    });
    const theirs = new Webhook(VECTOR.secret).sign(VECTOR.msgId, new Date(VECTOR.timestamp * 1000), VECTOR.body);
    expect(ours).toBe(theirs);
  });

  it('is accepted by the standardwebhooks verifier', () => {
    const secret = generateSecret();
    const body = JSON.stringify({
      type: 'invoice.paid',
      timestamp: new Date().toISOString(),
      data: { amount: 42, note: 'crème brûlée ✓' },
    });
    const headers = signatureHeaders({ msgId: 'msg_01hx', timestamp: now(), body, secrets: [secret] });
    expect(new Webhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
  });

  it('signs with every active secret during a rotation, and each secret verifies on its own', () => {
    const oldSecret = generateSecret();
    const newSecret = generateSecret();
    const body = '{"type":"invoice.paid","data":{}}';
    const headers = signatureHeaders({
      msgId: 'msg_rotating',
      timestamp: now(),
      body,
      secrets: [newSecret, oldSecret],
    });

    const parts = headers['webhook-signature'].split(' ');
    expect(parts).toHaveLength(2);
    for (const part of parts) expect(part).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);

    expect(() => new Webhook(oldSecret).verify(body, { ...headers })).not.toThrow();
    expect(() => new Webhook(newSecret).verify(body, { ...headers })).not.toThrow();
    expect(() => new Webhook(generateSecret()).verify(body, { ...headers })).toThrow();
  });

  it('produces headers a verifier rejects once the body is altered', () => {
    const secret = generateSecret();
    const headers = signatureHeaders({ msgId: 'msg_tamper', timestamp: now(), body: '{"a":1}', secrets: [secret] });
    expect(() => new Webhook(secret).verify('{"a":2}', { ...headers })).toThrow();
  });

  it('names the three Standard Webhooks headers', () => {
    const headers = signatureHeaders({ ...VECTOR, secrets: [VECTOR.secret] });
    expect(headers).toEqual({
      'webhook-id': VECTOR.msgId,
      'webhook-timestamp': '1614265330',
      'webhook-signature': VECTOR.signature,
    });
  });

  it('makes secrets of whsec_ + base64 of 24 random bytes', () => {
    const secret = generateSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(Buffer.from(secret.slice('whsec_'.length), 'base64')).toHaveLength(24);
    expect(isValidSecret(secret)).toBe(true);
    expect(new Set(Array.from({ length: 100 }, generateSecret)).size).toBe(100);
  });

  it('refuses malformed secrets rather than signing with a wrong key', () => {
    const input = { msgId: 'msg_1', timestamp: 1, body: '{}' };
    for (const bad of ['', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'whsec_', 'whsec_not base64!!', 'whsec_c2hvcnQ=']) {
      expect(isValidSecret(bad)).toBe(false);
      expect(() => sign({ ...input, secrets: [bad] })).toThrow(/secret/);
    }
    expect(() => sign({ ...input, secrets: [] })).toThrow(/at least one secret/);
  });

  it("signs ids with dots (a caller's messageId), and the verifier accepts them", () => {
    const secret = generateSecret();
    const body = '{"type":"order.paid","data":{}}';
    const headers = signatureHeaders({ msgId: 'order.1234.paid', timestamp: now(), body, secrets: [secret] });
    expect(headers['webhook-id']).toBe('order.1234.paid');
    expect(() => new Webhook(secret).verify(body, { ...headers })).not.toThrow();
  });

  it('refuses empty ids and timestamps that are not whole seconds', () => {
    const secrets = [generateSecret()];
    expect(() => sign({ msgId: '', timestamp: 1, body: '', secrets })).toThrow(/non-empty/);
    expect(() => sign({ msgId: 'msg_1', timestamp: 1.5, body: '', secrets })).toThrow(/Unix seconds/);
    expect(() => sign({ msgId: 'msg_1', timestamp: Date.now() / 1000, body: '', secrets })).toThrow(/Unix seconds/);
  });
});

/** An independent ed25519 verifier: Node's crypto, from the raw 32-byte whpk_ key. */
function nodeVerifies(publicKey: string, signed: string, signature: string): boolean {
  const key = createPublicKey({
    key: {
      kty: 'OKP',
      crv: 'Ed25519',
      x: Buffer.from(publicKey.slice('whpk_'.length), 'base64').toString('base64url'),
    },
    format: 'jwk',
  });
  return verify(null, Buffer.from(signed), key, Buffer.from(signature, 'base64'));
}

/** Another one, sharing no code with Node's: tweetnacl. */
function naclVerifies(publicKey: string, signed: string, signature: string): boolean {
  return nacl.sign.detached.verify(
    Buffer.from(signed),
    Buffer.from(signature, 'base64'),
    Buffer.from(publicKey.slice('whpk_'.length), 'base64'),
  );
}

/** The v1a signatures of a webhook-signature header, without their prefix. */
function v1aSignatures(header: string): string[] {
  return header
    .split(' ')
    .filter((part) => part.startsWith('v1a,'))
    .map((part) => part.slice('v1a,'.length));
}

describe('asymmetric webhook signing (v1a, ed25519)', () => {
  it('makes whsk_ private keys of 64 bytes (seed, then public key) and whpk_ public keys of 32 bytes', () => {
    const { privateKey, publicKey } = generateKeyPair();
    expect(privateKey).toMatch(/^whsk_[A-Za-z0-9+/]{86}==$/);
    expect(publicKey).toMatch(/^whpk_[A-Za-z0-9+/]{43}=$/);
    const secretKey = Buffer.from(privateKey.slice('whsk_'.length), 'base64');
    // tweetnacl (libsodium's layout) derives the same public key from the secret key.
    expect(Buffer.from(nacl.sign.keyPair.fromSecretKey(secretKey).publicKey).toString('base64')).toBe(
      publicKey.slice('whpk_'.length),
    );
    expect(publicKeyOf(privateKey)).toBe(publicKey);
    expect(schemeOf(privateKey)).toBe('ED25519');
    expect(schemeOf(generateSecret())).toBe('HMAC_SHA256');
    expect(isValidSecret(privateKey)).toBe(true);
    expect(new Set(Array.from({ length: 20 }, () => generateKeyPair().privateKey)).size).toBe(20);
  });

  it('signs "id.timestamp.body" so that Node crypto and tweetnacl both verify it with the whpk_ key', () => {
    const { privateKey, publicKey } = generateKeyPair();
    const body = '{"type":"invoice.paid","timestamp":"2026-12-06T10:00:00.000Z","data":{"note": "crème brûlée ✓"}}';
    const timestamp = now();
    const headers = signatureHeaders({ msgId: 'order.42', timestamp, body, secrets: [privateKey] });
    expect(headers['webhook-signature']).toMatch(/^v1a,[A-Za-z0-9+/]{86}==$/);
    const [signature] = v1aSignatures(headers['webhook-signature']);
    const signed = `order.42.${timestamp}.${body}`;
    expect(nodeVerifies(publicKey, signed, signature!)).toBe(true);
    expect(naclVerifies(publicKey, signed, signature!)).toBe(true);
    // ed25519 is deterministic: tweetnacl signing with the same whsk_ bytes gives the same signature.
    const secretKey = Buffer.from(privateKey.slice('whsk_'.length), 'base64');
    expect(Buffer.from(nacl.sign.detached(Buffer.from(signed), secretKey)).toString('base64')).toBe(signature);
    // Altered body, id or timestamp: refused by both.
    for (const altered of [
      signed.replace('crème', 'creme'),
      `order.43.${timestamp}.${body}`,
      `order.42.${timestamp + 1}.${body}`,
    ]) {
      expect(nodeVerifies(publicKey, altered, signature!)).toBe(false);
      expect(naclVerifies(publicKey, altered, signature!)).toBe(false);
    }
    // Another key pair's public key does not verify it.
    expect(naclVerifies(generateKeyPair().publicKey, signed, signature!)).toBe(false);
  });

  it('signs with a key pair made elsewhere (tweetnacl) and serialized as whsk_', () => {
    const pair = nacl.sign.keyPair();
    const privateKey = `whsk_${Buffer.from(pair.secretKey).toString('base64')}`;
    const publicKey = `whpk_${Buffer.from(pair.publicKey).toString('base64')}`;
    const [signature] = v1aSignatures(
      sign({ msgId: 'msg_1', timestamp: 1614265330, body: '{}', secrets: [privateKey] }),
    );
    expect(naclVerifies(publicKey, 'msg_1.1614265330.{}', signature!)).toBe(true);
    expect(nodeVerifies(publicKey, 'msg_1.1614265330.{}', signature!)).toBe(true);
  });

  it('signs v1 and v1a side by side while an endpoint rotates from a whsec_ secret to a key pair', () => {
    const secret = generateSecret();
    const { privateKey, publicKey } = generateKeyPair();
    const body = '{"type":"invoice.paid","data":{}}';
    const timestamp = now();
    const headers = signatureHeaders({ msgId: 'msg_switch', timestamp, body, secrets: [privateKey, secret] });
    const parts = headers['webhook-signature'].split(' ');
    expect(parts.map((part) => part.split(',')[0])).toEqual(['v1a', 'v1']);
    // The reference library (HMAC only) still accepts the message with the old secret.
    expect(() => new Webhook(secret).verify(body, { ...headers })).not.toThrow();
    expect(naclVerifies(publicKey, `msg_switch.${timestamp}.${body}`, v1aSignatures(parts.join(' '))[0]!)).toBe(true);
  });

  it('refuses malformed private keys rather than signing with a wrong key', () => {
    const input = { msgId: 'msg_1', timestamp: 1, body: '{}' };
    const a = Buffer.from(generateKeyPair().privateKey.slice('whsk_'.length), 'base64');
    const b = Buffer.from(generateKeyPair().privateKey.slice('whsk_'.length), 'base64');
    const mismatched = `whsk_${Buffer.concat([a.subarray(0, 32), b.subarray(32)]).toString('base64')}`;
    const seedOnly = `whsk_${a.subarray(0, 32).toString('base64')}`;
    for (const bad of ['whsk_', 'whsk_not base64!!', seedOnly, `whpk_${a.subarray(32).toString('base64')}`]) {
      expect(isValidSecret(bad)).toBe(false);
      expect(() => sign({ ...input, secrets: [bad] })).toThrow(/secret/);
    }
    expect(() => sign({ ...input, secrets: [mismatched] })).toThrow(/does not match its seed/);
    expect(() => publicKeyOf(generateSecret())).toThrow(/whsk_/);
  });
});
