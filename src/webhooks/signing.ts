import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign as signWithKey,
} from 'node:crypto';

/**
 * Standard Webhooks signing: the one signing function of Dispatch, for both
 * of the specification's schemes. Symmetric (`v1`): HMAC-SHA256 with a
 * shared `whsec_` secret. Asymmetric (`v1a`): ed25519 with a `whsk_` private
 * key that never leaves Dispatch; the receiver verifies with the `whpk_`
 * public key. Receivers verify with any Standard Webhooks or Svix library, so
 * every detail here (prefix, base64 alphabet, the signed string) follows the
 * specification exactly.
 */

export const SECRET_PREFIX = 'whsec_';
export const PRIVATE_KEY_PREFIX = 'whsk_';
export const PUBLIC_KEY_PREFIX = 'whpk_';

/** HMAC_SHA256 is Standard Webhooks' `v1`, ED25519 its `v1a`. */
export type SignatureScheme = 'HMAC_SHA256' | 'ED25519';

/** Bytes of randomness in a new secret; the specification's minimum is 24. */
export const SECRET_BYTES = 24;

// The specification allows symmetric keys of 24 to 64 bytes. Standard base64
// only, since that is what every verifier decodes.
const MIN_KEY_BYTES = 24;
const MAX_KEY_BYTES = 64;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A new endpoint secret: `whsec_` + base64 of 24 random bytes. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** An ed25519 key pair as Standard Webhooks serializes it. */
export interface KeyPair {
  /** `whsk_` + base64 of the 64-byte secret key (32-byte seed, then the public key), as libsodium and Svix lay it out. */
  privateKey: string;
  /** `whpk_` + base64 of the 32-byte public key: all a receiver needs. */
  publicKey: string;
}

/** A new ed25519 key pair for `v1a` signatures. */
export function generateKeyPair(): KeyPair {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d!, 'base64url');
  const publicKey = Buffer.from(jwk.x!, 'base64url');
  return {
    privateKey: PRIVATE_KEY_PREFIX + Buffer.concat([seed, publicKey]).toString('base64'),
    publicKey: PUBLIC_KEY_PREFIX + publicKey.toString('base64'),
  };
}

/** The scheme a `whsec_` secret or `whsk_` private key signs with, or undefined when it is neither. */
export function schemeOf(secret: string): SignatureScheme | undefined {
  if (decodeSecret(secret) !== undefined) return 'HMAC_SHA256';
  if (decodePrivateKey(secret) !== undefined) return 'ED25519';
  return undefined;
}

/** Whether `secret` is a well-formed `whsec_…` secret or `whsk_…` private key that sign() accepts. */
export function isValidSecret(secret: string): boolean {
  return schemeOf(secret) !== undefined;
}

/** The `whpk_` public key of a `whsk_` private key; throws on anything else. */
export function publicKeyOf(privateKey: string): string {
  const bytes = decodePrivateKey(privateKey);
  if (!bytes) throw new TypeError('not a whsk_ private key of 64 base64 bytes');
  return PUBLIC_KEY_PREFIX + bytes.subarray(32).toString('base64');
}

function decodeBase64(value: string, prefix: string): Buffer | undefined {
  if (typeof value !== 'string' || !value.startsWith(prefix)) return undefined;
  const encoded = value.slice(prefix.length);
  return BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
}

function decodeSecret(secret: string): Buffer | undefined {
  const key = decodeBase64(secret, SECRET_PREFIX);
  return key && key.length >= MIN_KEY_BYTES && key.length <= MAX_KEY_BYTES ? key : undefined;
}

function decodePrivateKey(privateKey: string): Buffer | undefined {
  const key = decodeBase64(privateKey, PRIVATE_KEY_PREFIX);
  return key?.length === 64 ? key : undefined;
}

export interface SignInput {
  /** `webhook-id`: the message id, stable across retries. */
  msgId: string;
  /** `webhook-timestamp`: Unix seconds of this attempt. */
  timestamp: number;
  /** The exact bytes sent as the request body. */
  body: string;
  /**
   * Every active secret of the endpoint (newest and those in their grace
   * period): `whsec_` secrets sign `v1`, `whsk_` private keys sign `v1a`.
   */
  secrets: readonly string[];
}

export interface SignatureHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/**
 * The `webhook-signature` header value, one signature of "id.timestamp.body"
 * per secret, space-separated, in the order given: `v1,<base64 HMAC-SHA256>`
 * for a `whsec_` secret, `v1a,<base64 ed25519 signature>` for a `whsk_`
 * private key. So a receiver holding either the old or the new secret (or
 * public key) accepts the message during a rotation, also one from one
 * scheme to the other.
 */
export function sign({ msgId, timestamp, body, secrets }: SignInput): string {
  // The id is the caller's messageId and may contain dots: a verifier
  // recomputes "id.timestamp.body" from the headers it received, and the
  // timestamp is digits only, so the signed string stays unambiguous.
  if (typeof msgId !== 'string' || msgId === '') {
    throw new TypeError(`webhook id must be a non-empty string, got ${JSON.stringify(msgId)}`);
  }
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new TypeError(`webhook timestamp must be whole Unix seconds, got ${timestamp}`);
  }
  if (secrets.length === 0) throw new TypeError('at least one secret is needed to sign a webhook');
  const signed = `${msgId}.${timestamp}.${body}`;
  return secrets
    .map((secret) => {
      const key = signingKey(secret);
      if (key.asymmetricKeyType === 'ed25519') {
        return `v1a,${signWithKey(null, Buffer.from(signed, 'utf8'), key).toString('base64')}`;
      }
      return `v1,${createHmac('sha256', key).update(signed, 'utf8').digest('base64')}`;
    })
    .join(' ');
}

/**
 * Decoded secrets and private keys, kept as KeyObjects: an HMAC keyed by a
 * KeyObject costs a sixth of one keyed by a Buffer on Node 24 (1.4 against
 * 8 µs), an ed25519 key is parsed once, and the same few keys sign every
 * delivery of their endpoints.
 */
const signingKeys = new Map<string, KeyObject>();
const MAX_SIGNING_KEYS = 10_000;

function signingKey(secret: string): KeyObject {
  let key = signingKeys.get(secret);
  if (!key) {
    key = decodeSigningKey(secret);
    if (signingKeys.size >= MAX_SIGNING_KEYS) signingKeys.clear();
    signingKeys.set(secret, key);
  }
  return key;
}

function decodeSigningKey(secret: string): KeyObject {
  const symmetric = decodeSecret(secret);
  if (symmetric) return createSecretKey(symmetric);
  const pair = decodePrivateKey(secret);
  if (!pair) {
    throw new TypeError(
      'secret is neither a whsec_ secret of 24 to 64 base64 bytes nor a whsk_ private key of 64 base64 bytes',
    );
  }
  const seed = pair.subarray(0, 32);
  const publicKey = pair.subarray(32);
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: publicKey.toString('base64url') },
    format: 'jwk',
  });
  // A key whose second half is not the seed's public key would sign what
  // the published whpk_ key can never verify.
  const derived = Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url');
  if (!derived.equals(publicKey)) throw new TypeError('whsk_ private key: its public half does not match its seed');
  return key;
}

/** The three Standard Webhooks headers of one attempt. */
export function signatureHeaders(input: SignInput): SignatureHeaders {
  return {
    'webhook-id': input.msgId,
    'webhook-timestamp': String(input.timestamp),
    'webhook-signature': sign(input),
  };
}
