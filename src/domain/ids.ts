import { hash, randomBytes, randomFillSync } from 'node:crypto';

/** Every id prefix, so an id tells its type (and serves as a Relay global id). */
export const ID_PREFIX = {
  Workspace: 'ws',
  ApiKey: 'key',
  App: 'app',
  EventType: 'evt',
  Recipient: 'rcp',
  Endpoint: 'ep',
  EndpointSecret: 'sec',
  Message: 'msg',
  Delivery: 'dlv',
  Attempt: 'atm',
  PortalSession: 'pts',
  Replay: 'rpl',
} as const;

export type IdType = keyof typeof ID_PREFIX;

const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';
const FORTY_BITS = 2 ** 40;

/** A whole number as `length` Crockford base-32 characters, zero-padded, so they sort as text. */
function encodeBase32(value: number, length: number): string {
  let out = '';
  let v = value;
  for (let i = 0; i < length; i++) {
    out = CROCKFORD[v % 32] + out;
    v = Math.floor(v / 32);
  }
  return out;
}

/** Milliseconds since the epoch: 10 characters. */
const encodeTime = (ms: number) => encodeBase32(ms, 10);
/** A 40-bit number: 8 characters. */
const encode40 = (value: number) => encodeBase32(value, 8);

// Randomness is drawn from the CSPRNG a pool at a time: one call per id costs
// more than the rest of making it.
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let poolOffset = POOL_BYTES;

function random40(): number {
  if (poolOffset + 5 > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const value = pool[poolOffset]! * 2 ** 32 + pool.readUInt32BE(poolOffset + 1);
  poolOffset += 5;
  return value;
}

let lastTime = 0;
let lastTimeText = '';
// The 80 random bits as two exact 40-bit halves (no BigInt).
let randomHigh = 0;
let randomLow = 0;

/**
 * A ULID-like body: 10 characters of milliseconds then 16 of randomness,
 * monotonic within a millisecond (the random part counts up), so ids sort by
 * creation time and serve as pagination cursors.
 */
function sortableBody(): string {
  const now = Date.now();
  if (now === lastTime) {
    randomLow++;
    if (randomLow === FORTY_BITS) {
      randomLow = 0;
      randomHigh = (randomHigh + 1) % FORTY_BITS;
    }
  } else {
    lastTime = now;
    lastTimeText = encodeTime(now);
    randomHigh = random40();
    randomLow = random40();
  }
  return lastTimeText + encode40(randomHigh) + encode40(randomLow);
}

export function newId(type: IdType): string {
  return `${ID_PREFIX[type]}_${sortableBody()}`;
}

/**
 * The smallest id of `type` that could be made at `time`: every id made
 * earlier sorts below it, so `id < idFloorAt(type, t)` finds rows older than
 * t through the primary key.
 */
export function idFloorAt(type: IdType, time: Date): string {
  return `${ID_PREFIX[type]}_${encodeTime(Math.max(0, time.getTime()))}${'0'.repeat(16)}`;
}

const byPrefix = new Map<string, IdType>(Object.entries(ID_PREFIX).map(([type, prefix]) => [prefix, type as IdType]));

/** The type an id names, or undefined when it has no known prefix. */
export function idType(id: string): IdType | undefined {
  const underscore = id.indexOf('_');
  if (underscore <= 0) return undefined;
  return byPrefix.get(id.slice(0, underscore));
}

/** A secret token: prefix + base64url of random bytes. */
export function newToken(prefix: 'dk' | 'dpt', bytes = 32): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}

/** What is stored of a secret token (API key, portal token): its SHA-256, hex. */
export function hashToken(token: string): string {
  return hash('sha256', token, 'hex');
}
