import type { App, Endpoint, EndpointOrdering, EndpointSecret } from '../db/client.ts';
import { MAX_RATE_LIMIT } from '../webhooks/endpoint-controls.ts';
import { headerProblem } from '../webhooks/headers.ts';
import { checkUrlAtCreate, createAddressPolicy, UrlError } from '../webhooks/outbound-safety.ts';
import { generateKeyPair, generateSecret, type SignatureScheme } from '../webhooks/signing.ts';
import { visible } from './access.ts';
import { requireApp } from './apps.ts';
import { type DomainContext, inTransaction, type SqlExecutor } from './context.ts';
import { badInput, DispatchError, forbidden, notFound } from './errors.ts';
import { checkEventTypesExist } from './event-types.ts';
import { newId } from './ids.ts';
import { changedByOf, OPERATIONAL_RECIPIENT, recordOperationalEvent } from './operational-events.ts';
import { checkExternalId, ensureRecipient } from './recipients.ts';

export const DEFAULT_GRACE_PERIOD_SECONDS = 24 * 3600;
export const MAX_GRACE_PERIOD_SECONDS = 7 * 24 * 3600;
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
const MAX_HEADER_NAME = 100;
const MAX_HEADER_VALUE = 4096;

export function checkHeaders(headers: unknown): Record<string, string> {
  if (headers === null || headers === undefined) return {};
  if (typeof headers !== 'object' || Array.isArray(headers))
    throw badInput('headers must be a JSON object of header names to string values');
  const entries = Object.entries(headers as Record<string, unknown>);
  if (entries.length > MAX_HEADERS) throw badInput(`at most ${MAX_HEADERS} custom headers`);
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (name.length > MAX_HEADER_NAME)
      throw badInput(`header name ${JSON.stringify(name.slice(0, 100))}… is over ${MAX_HEADER_NAME} characters`);
    // The sender's own rule, so a header saved here can be sent on every attempt.
    const problem = headerProblem(name, value);
    if (problem) throw badInput(problem);
    const lower = name.toLowerCase();
    if (RESERVED_HEADERS.has(lower) || lower.startsWith('webhook-'))
      throw badInput(`header ${name} is set by Dispatch and cannot be customised`);
    if ((value as string).length > MAX_HEADER_VALUE)
      throw badInput(`header ${name} has a value over ${MAX_HEADER_VALUE} characters`);
    // Names are case-insensitive: two spellings of one name would silently drop one value.
    if (lower in out) throw badInput(`header ${name} is given twice`);
    out[lower] = value as string;
  }
  return out;
}

function checkUrl(ctx: DomainContext, url: string): string {
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

/**
 * A rate limit as given (undefined: not given, null: none), checked: 1 to
 * MAX_RATE_LIMIT tries per second, and set from the portal only if the
 * app lets customers set it.
 */
function checkRateLimit(
  ctx: DomainContext,
  app: Pick<App, 'portalCanSetRateLimit'>,
  rateLimit: number | null | undefined,
) {
  if (rateLimit === undefined) return;
  if (ctx.actor.kind === 'portal' && !app.portalCanSetRateLimit)
    throw forbidden("this app's rate limits are set by its operator, not in the portal");
  if (rateLimit !== null && (!Number.isInteger(rateLimit) || rateLimit < 1 || rateLimit > MAX_RATE_LIMIT))
    throw badInput(
      `rateLimit must be a whole number of tries per second from 1 to ${MAX_RATE_LIMIT}, or null for none`,
    );
}

/** The endpoint if the actor may see it; foreign and missing alike give null. */
export function findEndpoint(ctx: DomainContext, id: string): Promise<Endpoint | null> {
  return ctx.prisma.endpoint.findFirst({ where: { id, AND: [visible.endpoint(ctx.actor)] } });
}

/**
 * A new signing key of `scheme`, as EndpointSecret stores it: a whsec_
 * secret, or a whsk_ private key with its whpk_ public key.
 */
function newSigningKey(scheme: SignatureScheme): { secret: string; publicKey: string | null } {
  if (scheme === 'ED25519') {
    const pair = generateKeyPair();
    return { secret: pair.privateKey, publicKey: pair.publicKey };
  }
  return { secret: generateSecret(), publicKey: null };
}

async function insertSigningKey(sql: SqlExecutor, endpointId: string, scheme: SignatureScheme): Promise<void> {
  const key = newSigningKey(scheme);
  await sql.query(`INSERT INTO "EndpointSecret" (id, "endpointId", secret, "publicKey") VALUES ($1, $2, $3, $4)`, [
    newId('EndpointSecret'),
    endpointId,
    key.secret,
    key.publicKey,
  ]);
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
    /** The caller's id of the recipient (GraphQL: recipientId). */
    recipientUid: string;
    url: string;
    eventTypes?: string[] | null;
    description?: string | null;
    disabled?: boolean | null;
    headers?: unknown;
    /** The scheme of its signing key; the app's signatureScheme when absent. */
    signatureScheme?: SignatureScheme | null;
    /** Tries per second; null or absent: no limit. */
    rateLimit?: number | null;
    ordering?: EndpointOrdering | null;
  },
): Promise<Endpoint> {
  const app = await requireApp(ctx, input.appId);
  checkExternalId(input.recipientUid, 'recipientId');
  if (ctx.actor.kind === 'portal' && input.recipientUid !== ctx.actor.recipientUid) throw notFound('recipient');
  if (app.operational && input.recipientUid !== OPERATIONAL_RECIPIENT)
    throw badInput(`the endpoints of the operational app belong to the recipient "${OPERATIONAL_RECIPIENT}"`);
  const url = checkUrl(ctx, input.url);
  const eventTypes = await checkEventTypesExist(ctx, app.id, input.eventTypes ?? []);
  const description = checkDescription(input.description);
  const headers = checkHeaders(input.headers);
  if (input.rateLimit != null) checkRateLimit(ctx, app, input.rateLimit);
  const id = newId('Endpoint');
  await inTransaction(ctx.pool, async (sql) => {
    const recipient = await ensureRecipient(sql, app.id, input.recipientUid);
    await sql.query(
      `INSERT INTO "Endpoint" (id, "appId", "recipientId", url, description, "eventTypes", disabled, "disabledReason", "disabledAt", headers,
         "rateLimit", ordering, "updatedAt")
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())`,
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
        input.rateLimit ?? null,
        input.ordering ?? 'NONE',
      ],
    );
    await insertSigningKey(sql, id, input.signatureScheme ?? app.signatureScheme);
    await recordPortalChange(ctx, sql, 'endpoint.created', id);
  });
  ctx.hooks.deliveriesCommitted?.();
  return ctx.prisma.endpoint.findUniqueOrThrow({ where: { id } });
}

/**
 * endpoint.created / updated / deleted report what a customer did in the
 * portal. The operator's own API calls are not reported back to it: its
 * backend made them and knows, and a handler that reacts to these events by
 * changing endpoints would otherwise hear itself. Disabling and enabling are
 * reported whoever does them (endpoint.disabled / enabled): they change
 * whether the endpoint receives anything.
 */
async function recordPortalChange(
  ctx: DomainContext,
  sql: SqlExecutor,
  type: 'endpoint.created' | 'endpoint.updated' | 'endpoint.deleted',
  endpointId: string,
  data: Record<string, unknown> = {},
): Promise<void> {
  if (ctx.actor.kind !== 'portal') return;
  await recordOperationalEvent(sql, ctx.hooks, { type, endpointId, data: { ...data, changedBy: 'customer' } });
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
    /** Tries per second; null removes the limit, undefined leaves it. */
    rateLimit?: number | null;
    ordering?: EndpointOrdering | null;
  },
): Promise<Endpoint> {
  const endpoint = await requireEndpoint(ctx, input.id);
  // Columns to set, checked before the transaction; `disabled` is settled under the row's lock.
  const set: Record<string, unknown> = {};
  if (input.url != null) set.url = checkUrl(ctx, input.url);
  if (input.eventTypes != null) set.eventTypes = await checkEventTypesExist(ctx, endpoint.appId, input.eventTypes);
  if (input.description !== undefined) set.description = checkDescription(input.description);
  if (input.headers !== undefined) set.headers = JSON.stringify(checkHeaders(input.headers));
  if (input.rateLimit !== undefined) {
    checkRateLimit(ctx, await ctx.prisma.app.findUniqueOrThrow({ where: { id: endpoint.appId } }), input.rateLimit);
    set.rateLimit = input.rateLimit;
  }
  if (input.ordering != null) set.ordering = input.ordering;
  await inTransaction(ctx.pool, async (sql) => {
    const { rows } = await sql.query<{ disabled: boolean; ordering: EndpointOrdering }>(
      `SELECT disabled, ordering FROM "Endpoint" WHERE id = $1 FOR UPDATE`,
      [endpoint.id],
    );
    const current = rows[0];
    if (!current) throw notFound('endpoint');
    const toggled = input.disabled != null && input.disabled !== current.disabled;
    const columns = { ...set };
    if (toggled && input.disabled) {
      Object.assign(columns, { disabled: true, disabledReason: 'disabled by user', disabledAt: new Date() });
    } else if (toggled) {
      // Enabling starts afresh: the failure clock restarts.
      Object.assign(columns, { disabled: false, disabledReason: null, disabledAt: null, failingSince: null });
    }
    const names = Object.keys(columns);
    if (names.length === 0) return;
    await sql.query(
      `UPDATE "Endpoint" SET ${names.map((name, i) => `"${name}" = $${i + 2}${name === 'ordering' ? '::"EndpointOrdering"' : ''}`).join(', ')}, "updatedAt" = now() WHERE id = $1`,
      [endpoint.id, ...names.map((name) => columns[name])],
    );
    if (current.ordering === 'FIFO' && input.ordering === 'NONE') await releaseHeld(ctx, sql, endpoint.id);
    const changes = Object.keys(set).concat(toggled ? ['disabled'] : []);
    await recordPortalChange(ctx, sql, 'endpoint.updated', endpoint.id, { changes });
    if (toggled && input.disabled) {
      await recordOperationalEvent(sql, ctx.hooks, {
        type: 'endpoint.disabled',
        endpointId: endpoint.id,
        data: {
          reason: 'manual',
          detail: 'disabled by user',
          changedBy: changedByOf(ctx),
          failingSince: endpoint.failingSince,
        },
      });
    } else if (toggled) {
      await recordOperationalEvent(sql, ctx.hooks, {
        type: 'endpoint.enabled',
        endpointId: endpoint.id,
        data: { changedBy: changedByOf(ctx) },
      });
    }
  });
  ctx.hooks.deliveriesCommitted?.();
  return ctx.prisma.endpoint.findUniqueOrThrow({ where: { id: endpoint.id } });
}

/**
 * An endpoint no longer FIFO: the deliveries held back for their turn (no
 * try queued) get their try now.
 */
async function releaseHeld(ctx: DomainContext, sql: SqlExecutor, endpointId: string): Promise<void> {
  const { rows } = await sql.query<{
    id: string;
    messageId: string;
    endpointId: string;
    appId: string;
    recipientId: string;
  }>(
    `UPDATE "Delivery" SET "nextAttemptAt" = now(), "updatedAt" = now()
     WHERE "endpointId" = $1 AND status = 'PENDING' AND "nextAttemptAt" IS NULL AND "heldById" IS NOT NULL
     RETURNING id, "messageId", "endpointId", "appId", "recipientId"`,
    [endpointId],
  );
  if (rows.length) await ctx.hooks.deliveriesCreated(sql, rows, { manual: false });
}

export async function deleteEndpoint(ctx: DomainContext, input: { id: string }): Promise<Endpoint> {
  const endpoint = await requireEndpoint(ctx, input.id);
  await inTransaction(ctx.pool, async (sql) => {
    // Recorded first, while the endpoint can still be read; both commit or neither.
    await recordPortalChange(ctx, sql, 'endpoint.deleted', endpoint.id);
    await sql.query(`DELETE FROM "Endpoint" WHERE id = $1`, [endpoint.id]);
  });
  ctx.hooks.deliveriesCommitted?.();
  return endpoint;
}

/**
 * Makes a new signing secret (or key pair). The ones in use keep signing
 * beside it for the grace period (default 24 h, at most 7 days; 0 retires
 * them now). The new key has the scheme asked for, else the newest key's, so
 * rotating is also how an endpoint moves between v1 and v1a: during the
 * grace period every delivery carries both signatures.
 */
export async function rotateEndpointSecret(
  ctx: DomainContext,
  input: { id: string; gracePeriodSeconds?: number | null; signatureScheme?: SignatureScheme | null },
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
    let scheme = input.signatureScheme;
    if (!scheme) {
      const newest = await sql.query<{ ed25519: boolean }>(
        `SELECT "publicKey" IS NOT NULL AS ed25519 FROM "EndpointSecret" WHERE "endpointId" = $1 ORDER BY id DESC LIMIT 1`,
        [endpoint.id],
      );
      scheme = newest.rows[0]?.ed25519 ? 'ED25519' : 'HMAC_SHA256';
    }
    await insertSigningKey(sql, endpoint.id, scheme);
    await sql.query(`UPDATE "Endpoint" SET "updatedAt" = now() WHERE id = $1`, [endpoint.id]);
    await recordPortalChange(ctx, sql, 'endpoint.updated', endpoint.id, { changes: ['secret'] });
  });
  ctx.hooks.deliveriesCommitted?.();
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

/**
 * The secrets that sign now: the newest, and rotated ones still in their
 * grace period (whsec_ secrets and whsk_ private keys alike).
 */
export function activeSecrets(secrets: EndpointSecret[], now = new Date()): EndpointSecret[] {
  return secrets.filter((s) => s.expiresAt === null || s.expiresAt > now).sort((a, b) => (a.id < b.id ? 1 : -1));
}
