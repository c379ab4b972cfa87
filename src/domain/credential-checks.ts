import type { PrismaClient } from '../db/client.ts';
import type { Actor } from './actor.ts';
import { DispatchError } from './errors.ts';
import { perClientMap } from './per-client.ts';

/**
 * How long a check that a long-lived connection's credential (API key,
 * portal session) is still live is trusted: a live-feed subscription ends
 * within this of its key or session being revoked in another process; in
 * the revoking process, at once (see onCredentialsRevoked).
 */
export const CREDENTIAL_RECHECK_MS = 5_000;

export interface CredentialStatus {
  live: boolean;
  /** When a portal session ends by itself. */
  expiresAt?: Date;
}

type Entry = { checkedAt: number; status: Promise<CredentialStatus> };

const cacheOf = perClientMap<string, Entry>();

async function readStatus(prisma: PrismaClient, actor: Actor): Promise<CredentialStatus> {
  if (actor.kind === 'portal') {
    const session = await prisma.portalSession.findUnique({
      where: { id: actor.sessionId },
      select: { revokedAt: true, expiresAt: true },
    });
    return { live: !!session && !session.revokedAt && session.expiresAt > new Date(), expiresAt: session?.expiresAt };
  }
  const key = await prisma.apiKey.findUnique({ where: { id: actor.apiKeyId }, select: { revokedAt: true } });
  return { live: !!key && !key.revokedAt };
}

/**
 * Whether the actor's key or session is still live, read at most once per
 * CREDENTIAL_RECHECK_MS per credential and process (all subscriptions of one
 * token share the read). A failed read is not cached and counts as live: a
 * database restart must not end every feed.
 */
export async function credentialStatus(
  prisma: PrismaClient,
  actor: Actor,
  now = Date.now(),
): Promise<CredentialStatus> {
  const cache = cacheOf(prisma);
  const id = actor.kind === 'portal' ? actor.sessionId : actor.apiKeyId;
  const cached = cache.get(id);
  if (cached && now - cached.checkedAt < CREDENTIAL_RECHECK_MS) {
    const status = await cached.status;
    if (!status.live || !status.expiresAt || status.expiresAt.getTime() > now) return status;
    return { ...status, live: false };
  }
  const entry: Entry = { checkedAt: now, status: readStatus(prisma, actor) };
  cache.set(id, entry);
  try {
    return await entry.status;
  } catch {
    if (cache.get(id) === entry) cache.delete(id);
    return { live: true };
  }
}

// Per Prisma client too: who wants to hear that a key or session was revoked in this process.
const revocationListeners = new WeakMap<PrismaClient, Set<() => void>>();

/**
 * Calls `listener` whenever a key or session is revoked in this process (the
 * live feed checks its credential again then); returns the function that
 * removes it.
 */
export function onCredentialsRevoked(prisma: PrismaClient, listener: () => void): () => void {
  let listeners = revocationListeners.get(prisma);
  if (!listeners) {
    listeners = new Set();
    revocationListeners.set(prisma, listeners);
  }
  const own = () => listener();
  listeners.add(own);
  return () => void listeners.delete(own);
}

/**
 * Forgets every cached check and tells the listeners, so a revocation in this
 * process takes effect at once: each open feed reads its credential again
 * (one read per credential, shared by its feeds).
 */
export function forgetCredentialChecks(prisma: PrismaClient): void {
  cacheOf(prisma).clear();
  for (const listener of revocationListeners.get(prisma) ?? []) listener();
}

export const credentialEnded = (actor: Actor) =>
  new DispatchError(
    'UNAUTHENTICATED',
    actor.kind === 'portal' ? 'this portal session expired or was revoked; sign in again' : 'this API key was revoked',
  );
