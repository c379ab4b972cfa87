import type { PrismaClient } from '../db/client.ts';
import type { PortalActor } from './actor.ts';
import { requireApp, requireOperator } from './apps.ts';
import { type DomainContext, inTransaction } from './context.ts';
import { forgetCredentialChecks } from './credential-checks.ts';
import { badInput } from './errors.ts';
import { hashToken, newId, newToken } from './ids.ts';
import { checkExternalId, ensureRecipient } from './recipients.ts';

export const DEFAULT_PORTAL_SESSION_SECONDS = 3600;
export const MAX_PORTAL_SESSION_SECONDS = 7 * 24 * 3600;

export interface CreatedPortalSession {
  id: string;
  token: string;
  url: string;
  expiresAt: Date;
}

/**
 * A short-lived token for one recipient of one app (created on first use).
 * The URL carries the token in its fragment, which browsers never send.
 */
export async function createPortalSession(
  ctx: DomainContext,
  input: { appId: string; recipientUid: string; expiresInSeconds?: number | null },
): Promise<CreatedPortalSession> {
  requireOperator(ctx);
  const app = await requireApp(ctx, input.appId);
  checkExternalId(input.recipientUid, 'recipientId');
  const seconds = input.expiresInSeconds ?? DEFAULT_PORTAL_SESSION_SECONDS;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_PORTAL_SESSION_SECONDS) {
    throw badInput(`expiresInSeconds must be an integer from 1 to ${MAX_PORTAL_SESSION_SECONDS} (7 days)`);
  }
  const token = newToken('dpt', 32);
  const id = newId('PortalSession');
  const expiresAt = new Date(Date.now() + seconds * 1000);
  await inTransaction(ctx.pool, async (sql) => {
    const recipient = await ensureRecipient(sql, app.id, input.recipientUid);
    await sql.query(
      `INSERT INTO "PortalSession" (id, "appId", "recipientId", "tokenHash", "expiresAt") VALUES ($1, $2, $3, $4, $5)`,
      [id, app.id, recipient.id, hashToken(token), expiresAt],
    );
  });
  return { id, token, expiresAt, url: `${ctx.settings.publicUrl}/portal#token=${token}` };
}

/** Revokes every live portal session of a recipient; returns how many. */
export async function revokePortalSessions(
  ctx: DomainContext,
  input: { appId: string; recipientUid: string },
): Promise<number> {
  requireOperator(ctx);
  const app = await requireApp(ctx, input.appId);
  const result = await ctx.prisma.portalSession.updateMany({
    where: { appId: app.id, recipient: { uid: input.recipientUid }, revokedAt: null, expiresAt: { gt: new Date() } },
    data: { revokedAt: new Date() },
  });
  // Open live feeds of these sessions in this process end at once.
  forgetCredentialChecks(ctx.prisma);
  return result.count;
}

/** The actor of a live portal token, or null for unknown, expired and revoked ones. */
export async function authenticatePortalToken(prisma: PrismaClient, token: string): Promise<PortalActor | null> {
  if (!/^dpt_[A-Za-z0-9_-]{43}$/.test(token)) return null;
  const session = await prisma.portalSession.findUnique({
    where: { tokenHash: hashToken(token) },
    include: { recipient: { select: { uid: true } }, app: { select: { workspaceId: true } } },
  });
  if (!session || session.revokedAt || session.expiresAt <= new Date()) return null;
  return {
    kind: 'portal',
    workspaceId: session.app.workspaceId,
    appId: session.appId,
    recipientId: session.recipientId,
    recipientUid: session.recipient.uid,
    sessionId: session.id,
  };
}
