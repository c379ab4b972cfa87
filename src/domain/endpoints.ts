import type { Endpoint, EndpointSecret, Prisma } from '../db/client.ts';
import { checkUrlAtCreate, createAddressPolicy, UrlError } from '../webhooks/outbound-safety.ts';
import { generateSecret } from '../webhooks/signing.ts';
import { visible } from './access.ts';
import { requireApp } from './apps.ts';
import { type DomainContext, inTransaction } from './context.ts';
import { badInput, DispatchError, notFound } from './errors.ts';
import { checkEventTypesExist } from './event-types.ts';
import { newId } from './ids.ts';
import { checkExternalId, ensureRecipient } from './recipients.ts';

export const DEFAULT_GRACE_PERIOD_SECONDS = 24 * 3600;
export const MAX_GRACE_PERIOD_SECONDS = 7 * 24 * 3600;
const MAX_URL_LENGTH = 2048;
const MAX_HEADERS = 20;

/** Headers Dispatch sets itself or that HTTP owns; a custom header may not replace them. */
const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'connection',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'proxy-authorization',
  'user-agent',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$/;

export function checkHeaders(headers: unknown): Record<string, string> {
  if (headers === null || headers === undefined) return {};
  if (typeof headers !== 'object' || Array.isArray(headers))
    throw badInput('headers must be a JSON object of header names to string values');
  const entries = Object.entries(headers as Record<string, unknown>);
  if (entries.length > MAX_HEADERS) throw badInput(`at most ${MAX_HEADERS} custom headers`);
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!HEADER_NAME.test(name))
      throw badInput(`header name ${JSON.stringify(name.slice(0, 100))} is not a valid HTTP header name`);
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower.startsWith('webhook-'))
      throw badInput(`header ${name} is set by Dispatch and cannot be customised`);
    if (typeof value !== 'string') throw badInput(`header ${name} must have a string value`);
    if (value.length > 4096 || /[\r\n\0]/.test(value)) throw badInput(`header ${name} has an invalid value`);
    // Names are case-insensitive: two spellings of one name would silently drop one value.
    if (lower in out) throw badInput(`header ${name} is given twice`);
    out[lower] = value;
  }
  return out;
}

function checkUrl(ctx: DomainContext, url: string): string {
  if (url.length > MAX_URL_LENGTH) throw badInput(`url must be at most ${MAX_URL_LENGTH} characters`);
  try {
    return checkUrlAtCreate(url, createAddressPolicy(ctx.settings.allowNetworks)).toString();
  } catch (error) {
    if (error instanceof UrlError) throw new DispatchError(error.code, urlRefusal(ctx, error));
    throw error;
  }
}

/**
 * Why a URL is refused, as the actor may be told: the operator's answer may
 * name the setting that would allow it (DISPATCH_ALLOW_NETWORKS); a customer
 * in the portal is told only what is wrong with the URL, never the operator's settings.
 */
function urlRefusal(ctx: DomainContext, error: UrlError): string {
  if (error.code !== 'UNSAFE_URL' || ctx.actor.kind === 'operator') return error.message;
  // The part before ';' says which address it is ("url host 10.0.0.1 is a private address").
  const what = error.message.split(';')[0]!;
  return `${what}: webhooks are delivered to public addresses only; use a URL on the public internet`;
}

function checkDescription(description: string | null | undefined): string | null {
  if (description == null) return null;
  if (description.length > 2000) throw badInput('description must be at most 2000 characters');
  return description;
}

/** The endpoint if the actor may see it; foreign and missing alike give null. */
export function findEndpoint(ctx: DomainContext, id: string): Promise<Endpoint | null> {
  return ctx.prisma.endpoint.findFirst({ where: { id, AND: [visible.endpoint(ctx.actor)] } });
}

async function requireEndpoint(ctx: DomainContext, id: string): Promise<Endpoint> {
  const endpoint = await findEndpoint(ctx, id);
  if (!endpoint) throw notFound('endpoint');
  return endpoint;
}

export async function createEndpoint(
  ctx: DomainContext,
  input: {
    appId: string;
    recipientId: string;
    url: string;
    eventTypes?: string[] | null;
    description?: string | null;
    disabled?: boolean | null;
    headers?: unknown;
  },
): Promise<Endpoint> {
  const app = await requireApp(ctx, input.appId);
  checkExternalId(input.recipientId, 'recipientId');
  if (ctx.actor.kind === 'portal' && input.recipientId !== ctx.actor.recipientUid) throw notFound('recipient');
  const url = checkUrl(ctx, input.url);
  const eventTypes = await checkEventTypesExist(ctx, app.id, input.eventTypes ?? []);
  const description = checkDescription(input.description);
  const headers = checkHeaders(input.headers);
  const id = newId('Endpoint');
  await inTransaction(ctx.pool, async (sql) => {
    const recipient = await ensureRecipient(sql, app.id, input.recipientId);
    await sql.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, description, "eventTypes", disabled, "disabledReason", "disabledAt", headers, "updatedAt")
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())`,
      [
        id,
        app.id,
        recipient.id,
        url,
        description,
        eventTypes,
        input.disabled ?? false,
        input.disabled ? 'disabled by user' : null,
        input.disabled ? new Date() : null,
        JSON.stringify(headers),
      ],
    );
    await sql.query(`INSERT INTO "EndpointSecret" (id, "endpointId", secret) VALUES ($1, $2, $3)`, [
      newId('EndpointSecret'),
      id,
      generateSecret(),
    ]);
  });
  return ctx.prisma.endpoint.findUniqueOrThrow({ where: { id } });
}

export async function updateEndpoint(
  ctx: DomainContext,
  input: {
    id: string;
    url?: string | null;
    eventTypes?: string[] | null;
    description?: string | null;
    disabled?: boolean | null;
    headers?: unknown;
  },
): Promise<Endpoint> {
  const endpoint = await requireEndpoint(ctx, input.id);
  const data: Prisma.EndpointUpdateInput = {};
  if (input.url != null) data.url = checkUrl(ctx, input.url);
  if (input.eventTypes != null) data.eventTypes = await checkEventTypesExist(ctx, endpoint.appId, input.eventTypes);
  if (input.description !== undefined) data.description = checkDescription(input.description);
  if (input.headers !== undefined) data.headers = checkHeaders(input.headers);
  if (input.disabled != null && input.disabled !== endpoint.disabled) {
    data.disabled = input.disabled;
    if (input.disabled) {
      data.disabledReason = 'disabled by user';
      data.disabledAt = new Date();
    } else {
      // Enabling starts afresh: the failure clock restarts.
      data.disabledReason = null;
      data.disabledAt = null;
      data.failingSince = null;
    }
  }
  return ctx.prisma.endpoint.update({ where: { id: endpoint.id }, data });
}

export async function deleteEndpoint(ctx: DomainContext, input: { id: string }): Promise<Endpoint> {
  const endpoint = await requireEndpoint(ctx, input.id);
  await ctx.prisma.endpoint.delete({ where: { id: endpoint.id } });
  return endpoint;
}

/**
 * Makes a new signing secret. The ones in use keep signing beside it for the
 * grace period (default 24 h, at most 7 days; 0 retires them now).
 */
export async function rotateEndpointSecret(
  ctx: DomainContext,
  input: { id: string; gracePeriodSeconds?: number | null },
): Promise<Endpoint> {
  const endpoint = await requireEndpoint(ctx, input.id);
  const grace = input.gracePeriodSeconds ?? DEFAULT_GRACE_PERIOD_SECONDS;
  if (!Number.isInteger(grace) || grace < 0 || grace > MAX_GRACE_PERIOD_SECONDS) {
    throw badInput(`gracePeriodSeconds must be an integer from 0 to ${MAX_GRACE_PERIOD_SECONDS}`);
  }
  const retireAt = new Date(Date.now() + grace * 1000);
  await inTransaction(ctx.pool, async (sql) => {
    // Lock the endpoint so two rotations at once serialise.
    await sql.query(`SELECT id FROM "Endpoint" WHERE id = $1 FOR UPDATE`, [endpoint.id]);
    await sql.query(
      `UPDATE "EndpointSecret" SET "expiresAt" = LEAST(COALESCE("expiresAt", $2), $2)
       WHERE "endpointId" = $1 AND ("expiresAt" IS NULL OR "expiresAt" > now())`,
      [endpoint.id, retireAt],
    );
    await sql.query(`INSERT INTO "EndpointSecret" (id, "endpointId", secret) VALUES ($1, $2, $3)`, [
      newId('EndpointSecret'),
      endpoint.id,
      generateSecret(),
    ]);
    await sql.query(`UPDATE "Endpoint" SET "updatedAt" = now() WHERE id = $1`, [endpoint.id]);
  });
  return ctx.prisma.endpoint.findUniqueOrThrow({ where: { id: endpoint.id } });
}

/**
 * activeSecrets as an SQL expression, for statements that load an endpoint
 * with its secrets (the delivery worker's): the same rule, newest first.
 */
export function activeSecretsSql(endpointIdColumn: string): string {
  return `ARRAY(SELECT s.secret FROM "EndpointSecret" s
    WHERE s."endpointId" = ${endpointIdColumn} AND (s."expiresAt" IS NULL OR s."expiresAt" > now()) ORDER BY s.id DESC)`;
}

/** The secrets that sign now: the newest, and rotated ones still in their grace period. */
export function activeSecrets(secrets: EndpointSecret[], now = new Date()): EndpointSecret[] {
  return secrets.filter((s) => s.expiresAt === null || s.expiresAt > now).sort((a, b) => (a.id < b.id ? 1 : -1));
}
