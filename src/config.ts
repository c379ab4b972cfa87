import path from 'node:path';
import type { TracingSettings } from './tracing.ts';

export type Role = 'all' | 'api' | 'worker';

export interface Config {
  /** PostgreSQL to use; undefined starts the embedded one under dataDir. */
  databaseUrl: string | undefined;
  port: number;
  host: string;
  publicUrl: string;
  /** PUBLIC_URL was not given: it follows the port the server actually listens on (PORT=0 picks a free one). */
  publicUrlFollowsPort: boolean;
  role: Role;
  /** Folder of the embedded PostgreSQL and other local state. */
  dataDir: string;
  /** An endpoint failing every attempt this long is disabled. */
  disableAfterSeconds: number;
  /** An endpoint failing every attempt this long is reported with the operational event endpoint.failing (once per run of failures). */
  failingAfterSeconds: number;
  /** CIDRs deliveries may reach despite the outbound-safety rule. */
  allowNetworks: string[];
  /** HTTP CONNECT proxy (http:// or https:// URL) deliveries tunnel through; undefined connects directly. */
  outboundProxy: string | undefined;
  /** Largest serialized message data accepted by sendMessage. */
  maxPayloadBytes: number;
  /** Largest HTTP request body the API reads. */
  maxRequestBytes: number;
  /** Requests per second one API key may make; 0 means unlimited. */
  apiKeyRateLimit: number;
  /** Most deliveries a worker process sends at once. */
  workerConcurrency: number;
  /** Tries of one workspace a worker process has waiting on endpoints at once (its fair share of the slots); 0: the default. */
  workspaceConcurrency: number;
  /** Most attempts in flight to one endpoint at once, counted across all worker processes. */
  endpointConcurrency: number;
  /** Milliseconds added to an endpoint's 1-second rate window (see src/webhooks/endpoint-controls.ts). */
  rateLimitMarginMs: number;
  /** Seconds between queue maintenance passes; a job of a killed worker is retried after its heartbeat (10 s) and one pass. */
  queueSuperviseSeconds: number;
  /** Days payloads and attempts are kept. */
  retentionDays: number;
  /** Operations one WebSocket may have open at once (subscriptions, and queries in flight). */
  maxSubscriptionsPerSocket: number;
  /** Live-feed subscriptions one API key or portal session may have open on one API process (WebSocket and SSE together). */
  maxSubscriptionsPerCredential: number;
  /** Browser origins besides Dispatch's own that may call the API (HTTP, SSE and WebSocket); none by default. */
  corsOrigins: string[];
  /** Value of the Content-Security-Policy frame-ancestors directive for the portal. */
  portalFrameAncestors: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** OpenTelemetry traces (the standard OTEL_* variables); undefined: off. */
  tracing: TracingSettings | undefined;
}

export class ConfigError extends Error {}

/**
 * Settings read through a recording environment (see listSettings): each
 * reader below notes its variable's default there, so the list of settings
 * is the code itself and the docs test compares it with docs/operating.md.
 */
const recordings = new WeakMap<object, Map<string, SettingDefault>>();

/** A setting's default as docs/operating.md shows it; null when it has none or it is computed (described in words). */
export type SettingDefault = number | string | null;

function note(env: NodeJS.ProcessEnv, name: string, fallback: SettingDefault): void {
  recordings.get(env)?.set(name, fallback);
}

function text(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  note(env, name, fallback);
  return env[name] || fallback;
}

function optional(env: NodeJS.ProcessEnv, name: string): string | undefined {
  note(env, name, null);
  return env[name] || undefined;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min = 0): number {
  note(env, name, fallback);
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) {
    throw new ConfigError(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, allowed: readonly T[], fallback: T): T {
  note(env, name, fallback);
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

function cidrList(env: NodeJS.ProcessEnv, name: string): string[] {
  note(env, name, null);
  const raw = env[name];
  if (!raw) return [];
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const item of items) {
    if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(item)) {
      throw new ConfigError(`${name}: ${JSON.stringify(item)} is not a CIDR such as 127.0.0.0/8 or ::1/128`);
    }
  }
  return items;
}

function proxyUrl(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name];
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a proxy URL such as http://proxy.internal:3128`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(`${name} must be an http:// or https:// (HTTP CONNECT) proxy URL, got ${url.protocol}`);
  }
  return url.href;
}

function originList(env: NodeJS.ProcessEnv, name: string): string[] {
  const raw = env[name];
  if (!raw) return [];
  const items = raw
    .split(',')
    .map((s) => s.trim().replace(/\/+$/, ''))
    .filter(Boolean);
  for (const item of items) {
    let origin: string | undefined;
    try {
      origin = new URL(item).origin;
    } catch {
      origin = undefined;
    }
    if (origin !== item || !/^https?:/.test(item)) {
      throw new ConfigError(
        `${name}: ${JSON.stringify(item)} is not an origin such as https://app.example.com or http://localhost:5173 (scheme, host and port only; no wildcards)`,
      );
    }
  }
  return items;
}

/**
 * OpenTelemetry traces, from the standard variables: on when
 * OTEL_TRACES_EXPORTER names an exporter (`otlp`, `console`) or an OTLP
 * endpoint is given (then `otlp`); off when OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none. The SDK and the OTLP exporter read the other
 * OTEL_* variables themselves (headers, timeout, sampler, resource attributes).
 */
function tracingSettings(env: NodeJS.ProcessEnv): TracingSettings | undefined {
  const disabled = text(env, 'OTEL_SDK_DISABLED', 'false').trim().toLowerCase() === 'true';
  const exporter = optional(env, 'OTEL_TRACES_EXPORTER')?.trim().toLowerCase();
  const endpoints = [optional(env, 'OTEL_EXPORTER_OTLP_ENDPOINT'), optional(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')];
  const protocols = [optional(env, 'OTEL_EXPORTER_OTLP_PROTOCOL'), optional(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL')];
  const serviceName = text(env, 'OTEL_SERVICE_NAME', 'dispatch');
  if (exporter !== undefined && !['otlp', 'console', 'none'].includes(exporter)) {
    throw new ConfigError(`OTEL_TRACES_EXPORTER must be otlp, console or none, got ${JSON.stringify(exporter)}`);
  }
  for (const endpoint of endpoints) {
    if (endpoint === undefined) continue;
    try {
      new URL(endpoint);
    } catch {
      throw new ConfigError(
        `an OTLP endpoint must be a URL such as http://collector:4318, got ${JSON.stringify(endpoint)}`,
      );
    }
  }
  if (disabled || exporter === 'none') return undefined;
  const chosen = exporter ?? (endpoints.some((e) => e !== undefined) ? 'otlp' : undefined);
  if (chosen === undefined) return undefined;
  const protocol = protocols[1] ?? protocols[0];
  if (chosen === 'otlp' && protocol !== undefined && !['http/protobuf', 'http/json'].includes(protocol)) {
    throw new ConfigError(
      `Dispatch exports traces as OTLP over HTTP (JSON): OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or http/json (the collector's HTTP port, 4318), got ${JSON.stringify(protocol)}`,
    );
  }
  return { exporter: chosen as TracingSettings['exporter'], serviceName };
}

/** Every setting, parsed and validated once. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const port = int(env, 'PORT', 4000);
  const givenPublicUrl = optional(env, 'PUBLIC_URL');
  const publicUrl = (givenPublicUrl || `http://localhost:${port}`).replace(/\/+$/, '');
  try {
    new URL(publicUrl);
  } catch {
    throw new ConfigError(`PUBLIC_URL must be an absolute URL, got ${JSON.stringify(publicUrl)}`);
  }
  return {
    databaseUrl: optional(env, 'DATABASE_URL'),
    port,
    host: text(env, 'HOST', '0.0.0.0'),
    publicUrl,
    publicUrlFollowsPort: !givenPublicUrl,
    role: oneOf(env, 'DISPATCH_ROLE', ['all', 'api', 'worker'] as const, 'all'),
    dataDir: path.resolve(text(env, 'DISPATCH_DATA_DIR', '.dispatch')),
    disableAfterSeconds: int(env, 'DISPATCH_DISABLE_AFTER_SECONDS', 432_000, 1),
    failingAfterSeconds: int(env, 'DISPATCH_FAILING_AFTER_SECONDS', 3_600, 1),
    allowNetworks: cidrList(env, 'DISPATCH_ALLOW_NETWORKS'),
    outboundProxy: proxyUrl(env, 'DISPATCH_OUTBOUND_PROXY'),
    maxPayloadBytes: int(env, 'DISPATCH_MAX_PAYLOAD_BYTES', 1024 * 1024, 1),
    maxRequestBytes: int(env, 'DISPATCH_MAX_REQUEST_BYTES', 2 * 1024 * 1024, 1024),
    apiKeyRateLimit: int(env, 'DISPATCH_API_KEY_RATE_LIMIT', 0),
    workerConcurrency: int(env, 'DISPATCH_WORKER_CONCURRENCY', 256, 1),
    endpointConcurrency: int(env, 'DISPATCH_ENDPOINT_CONCURRENCY', 8, 1),
    rateLimitMarginMs: int(env, 'DISPATCH_RATE_LIMIT_MARGIN_MS', 200, 0),
    workspaceConcurrency: int(env, 'DISPATCH_WORKSPACE_CONCURRENCY', 0, 0),
    queueSuperviseSeconds: int(env, 'DISPATCH_QUEUE_SUPERVISE_SECONDS', 15, 1),
    retentionDays: int(env, 'DISPATCH_RETENTION_DAYS', 30, 1),
    maxSubscriptionsPerSocket: int(env, 'DISPATCH_MAX_SUBSCRIPTIONS_PER_SOCKET', 100, 1),
    maxSubscriptionsPerCredential: int(env, 'DISPATCH_MAX_SUBSCRIPTIONS_PER_CREDENTIAL', 1000, 1),
    corsOrigins: originList(env, 'DISPATCH_CORS_ORIGINS'),
    portalFrameAncestors: text(env, 'DISPATCH_PORTAL_FRAME_ANCESTORS', "'self'"),
    logLevel: oneOf(env, 'LOG_LEVEL', ['debug', 'info', 'warn', 'error', 'silent'] as const, 'info'),
    tracing: tracingSettings(env),
  };
}

/**
 * Every environment variable loadConfig reads, with its default: loadConfig
 * runs once on an empty environment that records each variable asked for,
 * whether through a reader above (which notes its default) or directly
 * (default unknown: undefined). For the docs test; no behaviour depends on it.
 */
export function listSettings(): Map<string, SettingDefault | undefined> {
  const defaults = new Map<string, SettingDefault>();
  const read = new Set<string>();
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get(target, name) {
      if (typeof name === 'string') read.add(name);
      return Reflect.get(target, name);
    },
  });
  recordings.set(env, defaults);
  loadConfig(env);
  return new Map([...read].map((name) => [name, defaults.has(name) ? defaults.get(name) : undefined]));
}
