import type { ApiKey, Prisma, PrismaClient, Workspace } from '../db/client.ts';
import { forgetCredentialChecks } from './credential-checks.ts';
import { badInput } from './errors.ts';
import { hashToken, newId, newToken } from './ids.ts';
import { perClientMap } from './per-client.ts';

/** How many leading characters of a token are kept, to tell keys apart in listings. */
export const API_KEY_PREFIX_LENGTH = 10;

/** `dk_` + base64url of 32 random bytes, as newToken('dk') makes them. */
const TOKEN_PATTERN = /^dk_[A-Za-z0-9_-]{43}$/;

/** lastUsedAt is kept to this resolution, so a busy key is not written on every request. */
const LAST_USED_RESOLUTION_MS = 60_000;

/** How long this process trusts a successful lookup; also how late a revocation made elsewhere can take effect. */
const CACHE_TTL_MS = 1_000;
const CACHE_MAX_ENTRIES = 10_000;

/** An API key as it may be shown: everything but the hash of its token. */
export type ApiKeySummary = Omit<ApiKey, 'tokenHash'>;

const SUMMARY = {
  id: true,
  workspaceId: true,
  name: true,
  prefix: true,
  createdAt: true,
  lastUsedAt: true,
  revokedAt: true,
} satisfies Prisma.ApiKeySelect;

export interface CreatedApiKey {
  /** The secret itself. It is stored nowhere and cannot be shown again. */
  token: string;
  apiKey: ApiKeySummary;
  workspace: Workspace;
  /** Whether this call created the workspace. */
  workspaceCreated: boolean;
}

/** Who a live API key acts for. */
export interface ApiKeyIdentity {
  workspaceId: string;
  apiKeyId: string;
}

function checkName(value: string, what: string): string {
  const trimmed = value.trim();
  if (trimmed.length === 0 || trimmed.length > 200) throw badInput(`${what} must be 1 to 200 characters`);
  return trimmed;
}

/**
 * A new API key of the workspace named `workspaceName`, creating the
 * workspace if there is none by that name. Concurrent calls with the same new
 * name all succeed and share one workspace.
 */
export async function createApiKey(
  prisma: PrismaClient,
  input: { workspaceName: string; name?: string | null },
): Promise<CreatedApiKey> {
  const workspaceName = checkName(input.workspaceName, 'workspace name');
  const name = input.name === undefined || input.name === null ? null : checkName(input.name, 'API key name');

  // INSERT ... ON CONFLICT DO NOTHING: a concurrent insert of the same name
  // waits for the other to commit and then inserts nothing, so no error and
  // no second workspace; the row is there to read either way.
  const { count } = await prisma.workspace.createMany({
    data: [{ id: newId('Workspace'), name: workspaceName }],
    skipDuplicates: true,
  });
  const workspace = await prisma.workspace.findUniqueOrThrow({ where: { name: workspaceName } });

  const token = newToken('dk');
  const apiKey = await prisma.apiKey.create({
    data: {
      id: newId('ApiKey'),
      workspaceId: workspace.id,
      name,
      prefix: token.slice(0, API_KEY_PREFIX_LENGTH),
      tokenHash: hashToken(token),
    },
    select: SUMMARY,
  });
  return { token, apiKey, workspace, workspaceCreated: count === 1 };
}

/** Every API key of a workspace, revoked ones included, oldest first. */
export async function listApiKeys(prisma: PrismaClient, workspaceId: string): Promise<ApiKeySummary[]> {
  return prisma.apiKey.findMany({ where: { workspaceId }, orderBy: { id: 'asc' }, select: SUMMARY });
}

/**
 * Revokes an API key of the workspace; it stops authenticating at once in
 * this process and within CACHE_TTL_MS in others. Revoking a revoked key
 * changes nothing. A key of another workspace, or none, gives null.
 */
export async function revokeApiKey(
  prisma: PrismaClient,
  input: { workspaceId: string; id: string },
): Promise<ApiKeySummary | null> {
  await prisma.apiKey.updateMany({
    where: { id: input.id, workspaceId: input.workspaceId, revokedAt: null },
    data: { revokedAt: new Date() },
  });
  const key = await prisma.apiKey.findFirst({
    where: { id: input.id, workspaceId: input.workspaceId },
    select: { ...SUMMARY, tokenHash: true },
  });
  if (!key) return null;
  cacheOf(prisma).delete(key.tokenHash);
  forgetCredentialChecks(prisma);
  const { tokenHash: _hash, ...summary } = key;
  return summary;
}

interface CacheEntry {
  identity: ApiKeyIdentity;
  expiresAt: number;
}

const cacheOf = perClientMap<string, CacheEntry>();

/**
 * The workspace and key a bearer token stands for, or null for anything but a
 * live API key (malformed, unknown, revoked). Records `lastUsedAt` at most
 * once a minute per key, across all processes. `now` is for tests.
 */
export async function authenticateApiKey(
  prisma: PrismaClient,
  token: string,
  options: { now?: Date } = {},
): Promise<ApiKeyIdentity | null> {
  // Malformed tokens never reach the database.
  if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) return null;
  const now = options.now ?? new Date();
  const tokenHash = hashToken(token);
  const cache = cacheOf(prisma);
  const cached = cache.get(tokenHash);
  if (cached && cached.expiresAt > now.getTime()) return cached.identity;
  cache.delete(tokenHash);

  const key = await prisma.apiKey.findUnique({
    where: { tokenHash },
    select: { id: true, workspaceId: true, revokedAt: true, lastUsedAt: true },
  });
  if (!key || key.revokedAt) return null;

  const staleBefore = new Date(now.getTime() - LAST_USED_RESOLUTION_MS);
  if (!key.lastUsedAt || key.lastUsedAt <= staleBefore) {
    // Conditional, so processes racing on the same key write once between them.
    await prisma.apiKey.updateMany({
      where: { id: key.id, revokedAt: null, OR: [{ lastUsedAt: null }, { lastUsedAt: { lte: staleBefore } }] },
      data: { lastUsedAt: now },
    });
  }

  const identity: ApiKeyIdentity = { workspaceId: key.workspaceId, apiKeyId: key.id };
  if (cache.size >= CACHE_MAX_ENTRIES) {
    // Maps iterate in insertion order: drop the oldest entry.
    const oldest = cache.keys().next();
    if (!oldest.done) cache.delete(oldest.value);
  }
  cache.set(tokenHash, { identity, expiresAt: now.getTime() + CACHE_TTL_MS });
  return identity;
}
