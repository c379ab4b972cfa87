import { randomUUID } from 'node:crypto';
import type { DocumentTypeDecoration, TypedDocumentNode } from '@graphql-typed-document-node/core';
import { type DocumentNode, print } from 'graphql';
import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { FetchError, ofetch } from 'ofetch';
import { SendMessageDocument, type SendMessageInput, type SendMessageMutation } from './generated.js';

export * from './generated.js';

export interface GraphQLErrorShape {
  message: string;
  path?: readonly (string | number)[];
  extensions?: { code?: string; [key: string]: unknown };
}

/**
 * A request that answered with errors, or never answered; `code` is the first
 * error's extensions.code (NETWORK_ERROR when no answer came, CONNECTION_CLOSED
 * when a subscription's socket closed for good).
 */
export class DispatchClientError extends Error {
  readonly code: string | undefined;
  readonly errors: GraphQLErrorShape[];
  /** The HTTP status; 0 when no answer came. */
  readonly status: number;
  constructor(errors: GraphQLErrorShape[], status: number, options?: { cause?: unknown }) {
    super(errors.map((e) => e.message).join('; ') || `HTTP ${status}`, options);
    this.name = 'DispatchClientError';
    this.errors = errors;
    this.status = status;
    this.code = errors[0]?.extensions?.code;
  }
}

/** How requests that are safe to repeat (queries, sendMessage) are retried. */
export interface RetryOptions {
  /** Retries after the first try (default 12: with the delays below, 32 to 64 s in all). */
  retries?: number;
  /** Delay before the first retry, doubled before each next one (default 250 ms). */
  baseDelayMs?: number;
  /** Longest delay between two tries (default 8 s). */
  maxDelayMs?: number;
}

export interface DispatchClientOptions {
  /** The server's base URL (http://localhost:4000) or its /graphql endpoint. */
  url: string;
  /** An API key (dk_…) or a portal token (dpt_…). */
  apiKey: string;
  /** Per-try timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
  /** Retries of queries and sendMessage on 5xx (SERVICE_UNAVAILABLE is a 503) and network errors; false for none. */
  retry?: RetryOptions | false;
  /**
   * The WebSocket class for subscribe(). Node 22 and later have one built in;
   * on Node 20 pass the `ws` package's: `import WebSocket from 'ws'`.
   */
  webSocketImpl?: unknown;
  /** How many times subscribe() reconnects in a row before it gives up (default 10; graphql-ws's retryAttempts). */
  subscriptionRetryAttempts?: number;
}

/** A typed document: graphql-codegen's TypedDocumentNode, or its string form (documentMode: 'string'). */
export type Document<TResult, TVariables> =
  | TypedDocumentNode<TResult, TVariables>
  | (DocumentTypeDecoration<TResult, TVariables> & string)
  | (DocumentTypeDecoration<TResult, TVariables> & { toString(): string });

/** The variables argument: optional when the operation has no required variable. */
// biome-ignore lint/complexity/noBannedTypes: `{}` is how an operation without variables is typed
export type VariablesOf<TVariables> = {} extends TVariables ? [variables?: TVariables] : [variables: TVariables];

export interface DispatchClient {
  /**
   * Runs a typed query or mutation; resolves its data, or rejects with a
   * DispatchClientError. Queries are retried (see `retry`); mutations are sent
   * once, since repeating one could do it twice: use sendMessage() to send.
   */
  request<TResult, TVariables extends Record<string, unknown>>(
    document: Document<TResult, TVariables>,
    ...variables: VariablesOf<TVariables>
  ): Promise<TResult>;
  /**
   * Sends a message, safe to retry: a message without messageId (or
   * idempotencyKey) gets one here, and every retry carries the same one, so
   * a blip neither loses the message nor sends it twice. `deduplicated` is
   * true when a retry found it stored by an earlier try (or by an earlier
   * call with the same messageId). `document` picks other fields of the payload.
   */
  sendMessage<TPayload = SendMessageMutation['sendMessage']>(
    input: SendMessageInput,
    document?: Document<{ sendMessage: TPayload }, { input: SendMessageInput }>,
  ): Promise<TPayload>;
  /**
   * A typed subscription over graphql-ws: each event's data, until the
   * server ends it (or `break`/`return()`). A dropped socket reconnects and
   * subscribes again; events sent while it was down are missed (re-read them
   * with queries). Errors reject the iteration with a DispatchClientError.
   */
  subscribe<TResult, TVariables extends Record<string, unknown>>(
    document: Document<TResult, TVariables>,
    ...variables: VariablesOf<TVariables>
  ): AsyncGenerator<TResult, void, undefined>;
  /** Runs any GraphQL text once and returns the whole response, errors included. */
  raw<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
  ): Promise<{ data?: T | null; errors?: GraphQLErrorShape[]; status: number }>;
  /** Closes the subscriptions' socket, if one is open. */
  close(): Promise<void>;
}

type Response<T> = { data?: T | null; errors?: GraphQLErrorShape[]; status: number };

/** Statuses worth another try: the server or a proxy could not answer now (the request did nothing, or did it once). */
const RETRY_STATUS_CODES = [500, 502, 503, 504];

/** A small typed client for operator backends (and portal tokens). */
export function createDispatchClient(options: DispatchClientOptions): DispatchClient {
  const endpoint = options.url.replace(/\/+$/, '').replace(/(\/graphql)?$/, '/graphql');
  const authorization = `Bearer ${options.apiKey}`;
  const retry = {
    retries: options.retry === false ? 0 : (options.retry?.retries ?? 12),
    baseDelayMs: (options.retry !== false && options.retry?.baseDelayMs) || 250,
    maxDelayMs: (options.retry !== false && options.retry?.maxDelayMs) || 8_000,
  };
  const printed = new WeakMap<object, string>();
  let socket: WsClient | undefined;

  function text(document: Document<unknown, never>): string {
    if (typeof document === 'string') return document;
    if (!('kind' in document)) return document.toString();
    let query = printed.get(document);
    if (!query) {
      query = print(document as DocumentNode);
      printed.set(document, query);
    }
    return query;
  }

  /** Exponential backoff with jitter (half to all of the delay), so clients retrying together spread out. */
  const delay = (attempt: number) =>
    Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt) * (0.5 + Math.random() / 2);

  async function post<T>(
    query: string,
    variables: Record<string, unknown> | undefined,
    retries: number,
  ): Promise<Response<T>> {
    try {
      const response = await ofetch.raw<{ data?: T | null; errors?: GraphQLErrorShape[] }>(endpoint, {
        method: 'POST',
        headers: { authorization, accept: 'application/graphql-response+json, application/json' },
        body: { query, variables },
        timeout: options.timeoutMs ?? 30_000,
        retry: retries,
        retryStatusCodes: RETRY_STATUS_CODES,
        // ofetch counts retries down: this is the how-manieth retry.
        retryDelay: (context) => delay(retries - Number(context.options.retry ?? 0)),
      });
      return { ...(response._data ?? {}), status: response.status };
    } catch (error) {
      if (error instanceof FetchError && error.response) {
        const body = (error.data ?? {}) as { data?: T | null; errors?: GraphQLErrorShape[] };
        return { ...(typeof body === 'object' ? body : {}), status: error.response.status };
      }
      const reason = (error as Error).cause ?? error;
      throw new DispatchClientError(
        [
          {
            message: `no answer from ${endpoint}: ${(reason as Error).message}`,
            extensions: { code: 'NETWORK_ERROR' },
          },
        ],
        0,
        { cause: error },
      );
    }
  }

  async function run<T>(query: string, variables: Record<string, unknown> | undefined, retries: number): Promise<T> {
    const result = await post<T>(query, variables, retries);
    if (result.errors?.length || result.data == null) throw new DispatchClientError(result.errors ?? [], result.status);
    return result.data;
  }

  return {
    request(document, ...rest) {
      const query = text(document as Document<unknown, never>);
      return run(query, rest[0], isQuery(document, query) ? retry.retries : 0);
    },

    async sendMessage(input, document) {
      const withId = input.messageId || input.idempotencyKey ? input : { ...input, messageId: randomUUID() };
      const query = text((document ?? SendMessageDocument) as Document<unknown, never>);
      const data = await run<{ sendMessage: never }>(query, { input: withId }, retry.retries);
      return data.sendMessage;
    },

    async *subscribe(document, ...rest) {
      const webSocketImpl = options.webSocketImpl ?? (globalThis as { WebSocket?: unknown }).WebSocket;
      if (!webSocketImpl)
        throw new TypeError(
          'subscribe() needs a WebSocket: pass webSocketImpl (the `ws` package: import WebSocket from "ws") on Node 20',
        );
      socket ??= createWsClient({
        url: endpoint.replace(/^http/, 'ws'),
        connectionParams: { authorization },
        webSocketImpl,
        retryAttempts: options.subscriptionRetryAttempts ?? 10,
        // graphql-ws retries close events only; Node's WebSocket reports a refused
        // connection (a server restarting) as an error event. Fatal close codes
        // (4401 unauthorized, 4400, …) still end the subscription.
        shouldRetry: () => true,
      });
      const events = socket.iterate<never>({
        query: text(document as Document<unknown, never>),
        variables: rest[0] ?? {},
      });
      try {
        for (;;) {
          let next: IteratorResult<{ data?: unknown; errors?: readonly GraphQLErrorShape[] }>;
          try {
            next = await events.next();
          } catch (error) {
            throw closedError(error);
          }
          if (next.done) return;
          const { data, errors } = next.value;
          if (errors?.length) throw new DispatchClientError([...errors], 200);
          yield data as never;
        }
      } finally {
        await events.return?.();
      }
    },

    raw: (query, variables) => post(query, variables, 0),

    async close() {
      await socket?.dispose();
      socket = undefined;
    },
  };
}

/** Whether the document's operation is a query (safe to repeat). */
function isQuery(document: unknown, query: string): boolean {
  if (typeof document === 'object' && document && 'kind' in document) {
    const operation = (document as DocumentNode).definitions.find((d) => d.kind === 'OperationDefinition');
    return operation?.operation === 'query';
  }
  // A string document: the first operation keyword outside a fragment (`{` alone is a query).
  const first = /(?:^|\})\s*(query|mutation|subscription|\{)/.exec(query.replace(/#[^\n]*/g, ''));
  return first?.[1] === 'query' || first?.[1] === '{';
}

/** graphql-ws rejects with a CloseEvent (or an Error) when the socket closes for good. */
function closedError(error: unknown): DispatchClientError {
  if (error instanceof DispatchClientError) return error;
  // The server's `error` message: GraphQL errors, before any event.
  if (Array.isArray(error)) return new DispatchClientError(error as GraphQLErrorShape[], 200);
  if (error instanceof Error)
    return new DispatchClientError([{ message: error.message, extensions: { code: 'CONNECTION_CLOSED' } }], 0, {
      cause: error,
    });
  const { code, reason } = (error ?? {}) as { code?: number; reason?: string };
  return new DispatchClientError(
    [
      {
        message: `the subscription's socket closed${code ? ` (${code}${reason ? ` ${reason}` : ''})` : ''}`,
        extensions: { code: 'CONNECTION_CLOSED', closeCode: code },
      },
    ],
    0,
  );
}
