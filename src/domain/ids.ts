import { createHash, randomBytes } from 'node:crypto';

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
} as const;

export type IdType = keyof typeof ID_PREFIX;

const CROCKFORD = '0123456789abcdefghjkmnpqrstvwxyz';
let lastTime = 0;
let lastRandom: Buffer = Buffer.alloc(0);

/** Milliseconds since the epoch as 10 Crockford base-32 characters, so they sort as text. */
function encodeTime(ms: number): string {
  let time = '';
  let t = ms;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time;
}

/**
 * A ULID-like body: 10 characters of milliseconds then 16 of randomness,
 * monotonic within a millisecond, so ids sort by creation time and serve as
 * pagination cursors.
 */
function sortableBody(): string {
  const now = Date.now();
  let rand: Buffer;
  if (now === lastTime) {
    rand = Buffer.from(lastRandom);
    for (let i = rand.length - 1; i >= 0; i--) {
      if (rand[i]! < 255) {
        rand[i]!++;
        break;
      }
      rand[i] = 0;
    }
  } else {
    rand = randomBytes(10);
    lastTime = now;
  }
  lastRandom = rand;
  return encodeTime(now) + encodeRandom(rand);
}

/** 80 bits as 16 Crockford base-32 characters, in two exact 40-bit halves (no BigInt). */
function encodeRandom(rand: Buffer): string {
  let out = '';
  for (let half = 0; half < 10; half += 5) {
    let value = rand[half]! * 2 ** 32 + rand.readUInt32BE(half + 1);
    let chunk = '';
    for (let i = 0; i < 8; i++) {
      chunk = CROCKFORD[value % 32] + chunk;
      value = Math.floor(value / 32);
    }
    out += chunk;
  }
  return out;
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
  return createHash('sha256').update(token).digest('hex');
}
