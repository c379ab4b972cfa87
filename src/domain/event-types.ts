import type { EventType, Prisma } from '../db/client.ts';
import { requireApp, requireOperator } from './apps.ts';
import type { DomainContext } from './context.ts';
import { badInput, DispatchError } from './errors.ts';
import { newId } from './ids.ts';
import { checkJsonSchema } from './schema-validation.ts';

/** Dot-separated segments of letters, digits, `_` and `-`: `invoice.paid`, `user.profile-updated`. */
export const EVENT_TYPE_NAME = /^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*$/;
export const MAX_EVENT_TYPE_NAME = 256;

export function checkEventTypeName(name: string): void {
  if (name.length === 0 || name.length > MAX_EVENT_TYPE_NAME || !EVENT_TYPE_NAME.test(name)) {
    throw badInput(
      `event type name ${JSON.stringify(name.slice(0, 100))} must be 1 to ${MAX_EVENT_TYPE_NAME} characters: dot-separated segments of letters, digits, "_" and "-"`,
    );
  }
}

/**
 * Creates an event type. Creating the name of an archived one restores it
 * with the new description and schema; an active duplicate is refused.
 */
export async function createEventType(
  ctx: DomainContext,
  input: { appId: string; name: string; description?: string | null; schema?: unknown },
): Promise<EventType> {
  requireOperator(ctx);
  const app = await requireApp(ctx, input.appId);
  checkEventTypeName(input.name);
  if (input.description != null && input.description.length > 2000)
    throw badInput('description must be at most 2000 characters');
  if (input.schema != null) await checkJsonSchema(app.workspaceId, input.schema);
  const schema = (input.schema ?? undefined) as Prisma.InputJsonValue | undefined;
  const existing = await ctx.prisma.eventType.findUnique({
    where: { appId_name: { appId: app.id, name: input.name } },
  });
  if (existing && !existing.archivedAt) throw badInput(`event type ${input.name} already exists`);
  if (existing) {
    return ctx.prisma.eventType.update({
      where: { id: existing.id },
      data: {
        archivedAt: null,
        description: input.description ?? null,
        schema: schema ?? (null as unknown as Prisma.InputJsonValue),
      },
    });
  }
  try {
    return await ctx.prisma.eventType.create({
      data: { id: newId('EventType'), appId: app.id, name: input.name, description: input.description ?? null, schema },
    });
  } catch (error) {
    if ((error as { code?: string }).code === 'P2002') throw badInput(`event type ${input.name} already exists`);
    throw error;
  }
}

export async function archiveEventType(ctx: DomainContext, input: { appId: string; name: string }): Promise<EventType> {
  requireOperator(ctx);
  const app = await requireApp(ctx, input.appId);
  const existing = await ctx.prisma.eventType.findUnique({
    where: { appId_name: { appId: app.id, name: input.name } },
  });
  if (!existing) throw new DispatchError('UNKNOWN_EVENT_TYPE', `event type ${input.name} does not exist`);
  if (existing.archivedAt) return existing;
  return ctx.prisma.eventType.update({ where: { id: existing.id }, data: { archivedAt: new Date() } });
}

/** Makes an archived event type active again (sending it works, endpoints may subscribe); an active one is left as it is. */
export async function unarchiveEventType(
  ctx: DomainContext,
  input: { appId: string; name: string },
): Promise<EventType> {
  requireOperator(ctx);
  const app = await requireApp(ctx, input.appId);
  const existing = await ctx.prisma.eventType.findUnique({
    where: { appId_name: { appId: app.id, name: input.name } },
  });
  if (!existing) throw new DispatchError('UNKNOWN_EVENT_TYPE', `event type ${input.name} does not exist`);
  if (!existing.archivedAt) return existing;
  return ctx.prisma.eventType.update({ where: { id: existing.id }, data: { archivedAt: null } });
}

/** Checks a list of names against the app's active catalog (UNKNOWN_EVENT_TYPE for any other). */
export async function checkEventTypesExist(ctx: DomainContext, appId: string, names: string[]): Promise<string[]> {
  const unique = [...new Set(names)];
  for (const name of unique) checkEventTypeName(name);
  if (unique.length === 0) return unique;
  const found = await ctx.prisma.eventType.findMany({
    where: { appId, name: { in: unique }, archivedAt: null },
    select: { name: true },
  });
  const known = new Set(found.map((f) => f.name));
  const missing = unique.filter((n) => !known.has(n));
  if (missing.length)
    throw new DispatchError('UNKNOWN_EVENT_TYPE', `unknown event type(s): ${missing.join(', ')}`, {
      eventTypes: missing,
    });
  return unique;
}
