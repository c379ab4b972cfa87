import type { App } from '../db/client.ts';
import { validateRetrySchedule } from '../webhooks/retry.ts';
import type { SignatureScheme } from '../webhooks/signing.ts';
import { visible } from './access.ts';
import type { DomainContext } from './context.ts';
import { badInput, forbidden, notFound } from './errors.ts';
import { newId } from './ids.ts';

/** How long one try may take when the app does not say. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 15_000;
export const MIN_ATTEMPT_TIMEOUT_MS = 100;
export const MAX_ATTEMPT_TIMEOUT_MS = 60_000;

export function requireOperator(ctx: DomainContext) {
  if (ctx.actor.kind !== 'operator') throw forbidden('a portal token may not do that');
  return ctx.actor;
}

function checkName(name: string, what = 'name'): string {
  const trimmed = name.trim();
  if (trimmed.length === 0 || trimmed.length > 200) throw badInput(`${what} must be 1 to 200 characters`);
  return trimmed;
}

export async function createApp(
  ctx: DomainContext,
  input: {
    name: string;
    retrySchedule?: number[] | null;
    attemptTimeoutMs?: number | null;
    signatureScheme?: SignatureScheme | null;
    portalCanSetRateLimit?: boolean | null;
  },
): Promise<App> {
  const operator = requireOperator(ctx);
  const name = checkName(input.name);
  const schedule = input.retrySchedule ?? [];
  if (input.retrySchedule) {
    const problem = validateRetrySchedule(schedule);
    if (problem) throw badInput(problem);
  }
  const timeout = input.attemptTimeoutMs ?? null;
  if (
    timeout !== null &&
    (!Number.isInteger(timeout) || timeout < MIN_ATTEMPT_TIMEOUT_MS || timeout > MAX_ATTEMPT_TIMEOUT_MS)
  ) {
    throw badInput(`attemptTimeoutMs must be an integer from ${MIN_ATTEMPT_TIMEOUT_MS} to ${MAX_ATTEMPT_TIMEOUT_MS}`);
  }
  return ctx.prisma.app.create({
    data: {
      id: newId('App'),
      workspaceId: operator.workspaceId,
      name,
      retrySchedule: schedule,
      attemptTimeoutMs: timeout,
      ...(input.signatureScheme ? { signatureScheme: input.signatureScheme } : {}),
      ...(input.portalCanSetRateLimit != null ? { portalCanSetRateLimit: input.portalCanSetRateLimit } : {}),
    },
  });
}

export async function updateApp(
  ctx: DomainContext,
  input: {
    id: string;
    name?: string | null;
    retrySchedule?: number[] | null;
    attemptTimeoutMs?: number | null;
    signatureScheme?: SignatureScheme | null;
    portalCanSetRateLimit?: boolean | null;
  },
): Promise<App> {
  requireOperator(ctx);
  const app = await findApp(ctx, input.id);
  if (!app) throw notFound('app');
  const data: {
    name?: string;
    retrySchedule?: number[];
    attemptTimeoutMs?: number | null;
    signatureScheme?: SignatureScheme;
    portalCanSetRateLimit?: boolean;
  } = {};
  if (input.portalCanSetRateLimit != null) data.portalCanSetRateLimit = input.portalCanSetRateLimit;
  // Applies to endpoints created from now on; existing ones rotate to change.
  if (input.signatureScheme != null) data.signatureScheme = input.signatureScheme;
  if (input.name != null) data.name = checkName(input.name);
  if (input.retrySchedule != null) {
    const problem = input.retrySchedule.length ? validateRetrySchedule(input.retrySchedule) : null;
    if (problem) throw badInput(problem);
    data.retrySchedule = input.retrySchedule;
  }
  if (input.attemptTimeoutMs !== undefined) {
    const t = input.attemptTimeoutMs;
    if (t !== null && (!Number.isInteger(t) || t < MIN_ATTEMPT_TIMEOUT_MS || t > MAX_ATTEMPT_TIMEOUT_MS)) {
      throw badInput(`attemptTimeoutMs must be an integer from ${MIN_ATTEMPT_TIMEOUT_MS} to ${MAX_ATTEMPT_TIMEOUT_MS}`);
    }
    data.attemptTimeoutMs = t;
  }
  return ctx.prisma.app.update({ where: { id: app.id }, data });
}

/** The app if the actor may see it; foreign and missing alike give null. */
export function findApp(ctx: DomainContext, id: string): Promise<App | null> {
  return ctx.prisma.app.findFirst({ where: { id, AND: [visible.app(ctx.actor)] } });
}

export async function requireApp(ctx: DomainContext, id: string): Promise<App> {
  const app = await findApp(ctx, id);
  if (!app) throw notFound('app');
  return app;
}
