import type { PrismaClient } from '../db/client.ts';
import type { Actor } from './actor.ts';
import { authenticateApiKey } from './api-keys.ts';
import { authenticatePortalToken } from './portal-sessions.ts';

/** The actor of an `Authorization: Bearer <token>` value, or null when it names no live key or session. */
export async function authenticate(
  prisma: PrismaClient,
  authorization: string | null | undefined,
): Promise<Actor | null> {
  if (!authorization) return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) return null;
  const token = match[1]!;
  if (token.startsWith('dk_')) {
    const key = await authenticateApiKey(prisma, token);
    return key ? { kind: 'operator', workspaceId: key.workspaceId, apiKeyId: key.apiKeyId } : null;
  }
  if (token.startsWith('dpt_')) return authenticatePortalToken(prisma, token);
  return null;
}
