import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { generateSecret, isValidSecret, sign, signatureHeaders } from '../../src/webhooks/signing.ts';

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
