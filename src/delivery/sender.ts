import { isIP, type LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Agent, type buildConnector, type Dispatcher, errors, Pool, ProxyAgent } from 'undici';
import { headerProblem } from '../webhooks/headers.ts';
import {
  type AddressPolicy,
  checkUrlAtCreate,
  type Resolver,
  safeLookup,
  UnsafeAddressError,
  UrlError,
} from '../webhooks/outbound-safety.ts';

/**
 * One HTTP POST of a webhook, and nothing else: no retries, no database. The
 * worker signs, calls send(), and records the SendResult as an Attempt.
 *
 * undici's `request` on a keep-alive Agent rather than fetch: fetch costs
 * about six times the CPU per POST, and the Agent lets every connection go
 * through safeLookup, so only vetted addresses are ever dialled.
 */

/** Most bytes of a response body kept (and, give or take one socket read, read at all). */
export const RESPONSE_BODY_LIMIT = 16 * 1024;

export const DEFAULT_TIMEOUT_MS = 15_000;

export const DEFAULT_USER_AGENT = 'Dispatch-Webhooks/0.1';

export type SendErrorKind =
  | 'timeout'
  | 'connection_refused'
  | 'connection_reset'
  | 'dns'
  | 'tls'
  | 'unsafe_address'
  | 'redirect'
  | 'http_status'
  | 'invalid_response'
  /** The request itself cannot be made: a stored URL or header that is not valid (a bug upstream, not the receiver's fault). */
  | 'invalid_request'
  | 'network';

export interface SendRequest {
  url: string;
  /** Signature headers, the endpoint's custom headers, content-type. */
  headers: Record<string, string>;
  body: string;
  /** Bound on the whole attempt: connecting, the response headers and the body. */
  timeoutMs?: number;
}

export interface SendResult {
  /** The receiver answered 2xx. */
  ok: boolean;
  statusCode?: number;
  /** The first 16 KiB of the response body, decoded as UTF-8. */
  responseBody?: string;
  /** The body was longer than 16 KiB or did not arrive whole (cut by the timeout or the peer). */
  responseBodyTruncated?: boolean;
  durationMs: number;
  errorKind?: SendErrorKind;
  /** What went wrong, for people. */
  error?: string;
  /** The Retry-After header of the response, null when it had none. */
  retryAfter?: string | null;
}

export interface SenderOptions {
  policy: AddressPolicy;
  userAgent?: string;
  /**
   * Most open connections to one origin. Many endpoints can share an origin
   * (one receiving service for many recipients), so the default matches the
   * worker's default concurrency: the cap bounds sockets without queueing
   * deliveries behind each other.
   */
  connectionsPerOrigin?: number;
  /** How host names are resolved before safeLookup vets them; dns.lookup by default. */
  resolver?: Resolver;
  /**
   * An HTTP CONNECT proxy (DISPATCH_OUTBOUND_PROXY) every delivery tunnels
   * through, e.g. for a static egress address. The endpoint's address is
   * still vetted, before the CONNECT; the proxy's own address is the
   * operator's choice and is not.
   */
  proxy?: string | undefined;
}

export interface Sender {
  send(request: SendRequest): Promise<SendResult>;
  /** Closes idle connections and waits for attempts in flight. */
  close(): Promise<void>;
}

// Dispatch owns the framing and the target of the request; an endpoint's
// custom headers must not be able to change either.
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'expect',
  'te',
  'trailer',
  'proxy-connection',
  'proxy-authorization',
]);

const TIMED_OUT = Symbol('timed out');

/** Endpoint URLs whose check a sender remembers. */
const URL_CACHE_SIZE = 10_000;

class AttemptTimeoutError extends Error {
  readonly code = 'EATTEMPTTIMEOUT';
  constructor(timeoutMs: number) {
    super(`no complete response within ${timeoutMs} ms`);
    this.name = 'AttemptTimeoutError';
  }
}

export function createSender({
  policy,
  userAgent = DEFAULT_USER_AGENT,
  connectionsPerOrigin = 64,
  resolver,
  proxy,
}: SenderOptions): Sender {
  const lookup = safeLookup(policy, resolver);
  const pooling = {
    connections: connectionsPerOrigin,
    // Receivers commonly close idle connections after 5 s; undici also reads
    // their Keep-Alive hint. Reusing a connection saves a handshake per POST.
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
  };
  const agent: Dispatcher = proxy
    ? new ProxyAgent({
        uri: proxy,
        ...pooling,
        // Each origin's pool opens its connections with undici's tunnelling
        // connect (CONNECT to the proxy, then TLS for https inside it);
        // vetting the endpoint's address goes in front of it.
        factory: (origin, options) =>
          new Pool(origin, {
            ...options,
            connect: vettedBeforeTunnel((options as Pool.Options).connect as buildConnector.connector, policy, lookup),
          }),
      })
    : new Agent({ ...pooling, connect: { lookup } });

  // The verdict on each URL, parsed once: the policy is fixed for this
  // sender, and a literal address never goes through the lookup, so it is
  // checked here. Bounded: cleared when it grows past URL_CACHE_SIZE.
  const urlVerdicts = new Map<string, { origin: string; path: string } | UrlError>();
  function checkedUrl(url: string): { origin: string; path: string } | UrlError {
    let verdict = urlVerdicts.get(url);
    if (verdict === undefined) {
      try {
        const parsed = checkUrlAtCreate(url, policy);
        verdict = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
      } catch (error) {
        if (!(error instanceof UrlError)) throw error;
        verdict = error;
      }
      if (urlVerdicts.size >= URL_CACHE_SIZE) urlVerdicts.clear();
      urlVerdicts.set(url, verdict);
    }
    return verdict;
  }

  async function send({ url, headers, body, timeoutMs = DEFAULT_TIMEOUT_MS }: SendRequest): Promise<SendResult> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);

    const checked = checkedUrl(url);
    if (checked instanceof UrlError) {
      const errorKind = checked.code === 'UNSAFE_URL' ? 'unsafe_address' : 'invalid_request';
      return { ok: false, durationMs: elapsed(), errorKind, error: checked.message };
    }
    const target = checked;

    const outgoing: Record<string, string> = { 'user-agent': userAgent, 'content-type': 'application/json' };
    for (const [name, value] of Object.entries(headers)) {
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.has(lower)) continue;
      // The rule endpoints are saved with: a header it refuses could never be sent.
      const problem = headerProblem(name, value);
      if (problem) return { ok: false, durationMs: elapsed(), errorKind: 'invalid_request', error: problem };
      outgoing[lower] = value;
    }

    // One timer bounds the whole attempt. Aborting the signal ends a request
    // that is connected (and destroys a body being read), but undici only
    // notices an abort once connected, so the headers phase is also raced
    // against the timer: a hanging connect or DNS answer cannot outlast it.
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<typeof TIMED_OUT>((resolve) => {
      timer = setTimeout(() => {
        controller.abort(new AttemptTimeoutError(timeoutMs));
        resolve(TIMED_OUT);
      }, timeoutMs);
    });
    const timedOut = (): SendResult => ({
      ok: false,
      durationMs: elapsed(),
      errorKind: 'timeout',
      error: `timed out: no response within ${timeoutMs} ms`,
    });

    try {
      const pending = agent.request({
        origin: target.origin,
        path: target.path,
        method: 'POST',
        headers: outgoing,
        body,
        signal: controller.signal,
      });
      // Nobody awaits it once the deadline wins the race.
      pending.catch(() => {});
      const response = await Promise.race([pending, deadline]);
      if (response === TIMED_OUT) return timedOut();

      const read = await readCapped(response.body, controller.signal);
      const statusCode = response.statusCode;
      const result: SendResult = {
        ok: statusCode >= 200 && statusCode < 300,
        statusCode,
        responseBody: decodeBody(read.bytes),
        responseBodyTruncated: read.truncated,
        durationMs: elapsed(),
        retryAfter: firstHeader(response.headers['retry-after']) ?? null,
      };
      // The status line decides the outcome: a 2xx whose body never ends (or
      // is cut) still means the receiver accepted the webhook.
      if (result.ok) return result;
      if (statusCode >= 300 && statusCode < 400) {
        const location = firstHeader(response.headers.location);
        return {
          ...result,
          errorKind: 'redirect',
          error: `redirect ${statusCode} to ${location ?? '(no Location header)'} not followed; update the endpoint URL instead`,
        };
      }
      return { ...result, errorKind: 'http_status', error: `receiver answered HTTP ${statusCode}` };
    } catch (error) {
      if (controller.signal.aborted) return timedOut();
      return { ok: false, durationMs: elapsed(), ...describeFailure(error) };
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    send,
    close: () => agent.close(),
  };
}

/**
 * A connect that vets the endpoint's host before `tunnel` asks the proxy to
 * CONNECT to it: a literal address against the policy, a name by resolving
 * it through safeLookup (refused whole if any address is not allowed). The
 * proxy then resolves the name again on its own, so an answer that changes
 * in between (DNS rebinding) is the proxy's to refuse (README, "Egress
 * through a proxy").
 */
function vettedBeforeTunnel(
  tunnel: buildConnector.connector,
  policy: AddressPolicy,
  lookup: LookupFunction,
): buildConnector.connector {
  return (options, callback) => {
    const host = options.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host)) {
      if (policy.isAllowed(host)) tunnel(options, callback);
      else callback(new UnsafeAddressError(host, host), null);
      return;
    }
    lookup(host, { all: true }, (error) => {
      if (error) callback(error, null);
      else tunnel(options, callback);
    });
  };
}

/**
 * Reads at most RESPONSE_BODY_LIMIT bytes (plus the rest of the chunk that
 * crossed it), then destroys the body, which closes the connection: an
 * endless body cannot grow memory or hold the attempt. A body that fails
 * midway (timeout, reset) keeps what arrived.
 */
function readCapped(body: Readable, signal: AbortSignal): Promise<{ bytes: Buffer; truncated: boolean }> {
  // Events rather than an async iterator: most bodies are a few bytes in one
  // chunk, and iterating cost more than the rest of reading them.
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (truncated: boolean) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('close', onClose);
      // Errors after this point (the destroy below, a late reset) are not ours to report.
      body.on('error', () => {});
      body.off('error', onError);
      if (truncated && !body.destroyed) body.destroy();
      resolve({ bytes: Buffer.concat(chunks, size), truncated });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > RESPONSE_BODY_LIMIT) finish(true);
    };
    const onEnd = () => finish(false);
    const onError = () => finish(true);
    // Closed without an end: cut by the peer.
    const onClose = () => finish(true);
    const onAbort = () => body.destroy(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}

/**
 * The first RESPONSE_BODY_LIMIT bytes as UTF-8, cut on a character boundary.
 * NUL becomes U+FFFD because PostgreSQL text cannot hold it.
 */
function decodeBody(bytes: Buffer): string {
  let end = Math.min(bytes.length, RESPONSE_BODY_LIMIT);
  if (end < bytes.length) {
    // Step back over continuation bytes (10xxxxxx) so the cut does not split a character.
    let start = end;
    while (start > 0 && end - start < 3 && (bytes[start]! & 0xc0) === 0x80) start--;
    if ((bytes[start]! & 0xc0) !== 0x80) end = start;
  }
  return bytes.subarray(0, end).toString('utf8').replaceAll('\u0000', '\uFFFD');
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

interface ErrorLike {
  code?: unknown;
  syscall?: unknown;
  message?: unknown;
  cause?: unknown;
  errors?: unknown;
}

/** Every error code in an error, its causes and (for happy-eyeballs connects) its aggregated errors. */
function errorCodes(error: unknown, depth = 0): string[] {
  if (depth > 5 || typeof error !== 'object' || error === null) return [];
  const e = error as ErrorLike;
  const codes: string[] = [];
  if (typeof e.code === 'string') codes.push(e.code);
  if (e.syscall === 'getaddrinfo') codes.push('getaddrinfo');
  // undici's parser errors do not always carry an HPE_ code.
  if (error instanceof errors.HTTPParserError) codes.push('HPE_PARSE');
  codes.push(...errorCodes(e.cause, depth + 1));
  if (Array.isArray(e.errors)) for (const inner of e.errors) codes.push(...errorCodes(inner, depth + 1));
  return codes;
}

const KIND_BY_CODE: Record<string, SendErrorKind> = {
  EUNSAFEADDRESS: 'unsafe_address',
  UND_ERR_CONNECT_TIMEOUT: 'timeout',
  UND_ERR_HEADERS_TIMEOUT: 'timeout',
  UND_ERR_BODY_TIMEOUT: 'timeout',
  ETIMEDOUT: 'timeout',
  ECONNREFUSED: 'connection_refused',
  ECONNRESET: 'connection_reset',
  ECONNABORTED: 'connection_reset',
  EPIPE: 'connection_reset',
  // undici's "other side closed": the peer closed the connection before a full response.
  UND_ERR_SOCKET: 'connection_reset',
  getaddrinfo: 'dns',
  ENOTFOUND: 'dns',
  EAI_AGAIN: 'dns',
  EAI_FAIL: 'dns',
  EAI_NODATA: 'dns',
  EAI_NONAME: 'dns',
  ENODATA: 'dns',
  EPROTO: 'tls',
  UND_ERR_HEADERS_OVERFLOW: 'invalid_response',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'invalid_response',
  UND_ERR_INVALID_ARG: 'invalid_request',
  ERR_INVALID_CHAR: 'invalid_request',
  ERR_INVALID_HTTP_TOKEN: 'invalid_request',
};

function kindOf(code: string): SendErrorKind | undefined {
  if (KIND_BY_CODE[code]) return KIND_BY_CODE[code];
  // llhttp parse errors: the peer did not speak HTTP/1.1.
  if (code.startsWith('HPE_')) return 'invalid_response';
  if (
    code.startsWith('ERR_TLS_') ||
    code.startsWith('ERR_SSL_') ||
    /CERT|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)
  ) {
    return 'tls';
  }
  return undefined;
}

const KIND_TEXT: Record<SendErrorKind, string> = {
  timeout: 'timed out',
  connection_refused: 'connection refused',
  connection_reset: 'connection closed by the receiver',
  dns: 'host name did not resolve',
  tls: 'TLS failed',
  unsafe_address: 'unsafe address refused',
  redirect: 'redirect not followed',
  http_status: 'HTTP error status',
  invalid_response: 'response is not valid HTTP',
  invalid_request: 'request could not be made',
  network: 'network error',
};

function describeFailure(error: unknown): { errorKind: SendErrorKind; error: string } {
  const errorKind =
    errorCodes(error)
      .map(kindOf)
      .find((kind) => kind !== undefined) ?? 'network';
  const e = (typeof error === 'object' && error !== null ? error : {}) as ErrorLike & { reason?: unknown };
  let message = (error instanceof Error ? error.message : String(error)).trim();
  // OpenSSL's message is a raw error-queue line; its reason and code read better.
  if (typeof e.reason === 'string' && e.reason !== '') {
    message = typeof e.code === 'string' ? `${e.reason} (${e.code})` : e.reason;
  }
  // UnsafeAddressError explains itself fully.
  if (errorKind === 'unsafe_address') return { errorKind, error: message };
  return { errorKind, error: message ? `${KIND_TEXT[errorKind]}: ${message}` : KIND_TEXT[errorKind] };
}
