import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { print } from 'graphql';
import { ofetch } from 'ofetch';

export * from './generated.ts';

export interface GraphQLErrorShape {
  message: string;
  path?: (string | number)[];
  extensions?: { code?: string; [key: string]: unknown };
}

/** A request that answered with errors; `code` is the first error's extensions.code. */
export class DispatchClientError extends Error {
  readonly code: string | undefined;
  readonly errors: GraphQLErrorShape[];
  readonly status: number;
  constructor(errors: GraphQLErrorShape[], status: number) {
    super(errors.map((e) => e.message).join('; ') || `HTTP ${status}`);
    this.name = 'DispatchClientError';
    this.errors = errors;
    this.status = status;
    this.code = errors[0]?.extensions?.code;
  }
}

export interface DispatchClientOptions {
  /** The server's base URL (http://localhost:4000) or its /graphql endpoint. */
  url: string;
  /** An API key (dk_…) or a portal token (dpt_…). */
  apiKey: string;
  /** Per-request timeout in milliseconds (default 30 s). */
  timeoutMs?: number;
}

export interface DispatchClient {
  /** Runs a typed operation; resolves its data, or rejects with a DispatchClientError. */
  request<TResult, TVariables extends Record<string, unknown>>(
    document: TypedDocumentNode<TResult, TVariables>,
    // biome-ignore lint/complexity/noBannedTypes: `{}` is how an operation without variables is typed
    ...variables: {} extends TVariables ? [TVariables?] : [TVariables]
  ): Promise<TResult>;
  /** Runs any GraphQL text and returns the whole response, errors included. */
  raw<T = Record<string, unknown>>(
    query: string,
    variables?: Record<string, unknown>,
  ): Promise<{ data?: T | null; errors?: GraphQLErrorShape[]; status: number }>;
}

/** A small typed client for operator backends (and portal tokens). */
export function createDispatchClient(options: DispatchClientOptions): DispatchClient {
  const endpoint = options.url.replace(/\/+$/, '').replace(/(\/graphql)?$/, '/graphql');
  const printed = new WeakMap<object, string>();

  async function post<T>(query: string, variables: Record<string, unknown> | undefined) {
    const response = await ofetch.raw<{ data?: T | null; errors?: GraphQLErrorShape[] }>(endpoint, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${options.apiKey}`,
        accept: 'application/graphql-response+json, application/json',
      },
      body: { query, variables },
      ignoreResponseError: true,
      timeout: options.timeoutMs ?? 30_000,
      retry: 0,
    });
    return { ...(response._data ?? {}), status: response.status };
  }

  return {
    async request(document, ...rest) {
      let query = printed.get(document);
      if (!query) {
        query = print(document);
        printed.set(document, query);
      }
      const result = await post(query, rest[0] as Record<string, unknown> | undefined);
      if (result.errors?.length || result.data == null)
        throw new DispatchClientError(result.errors ?? [], result.status);
      return result.data as never;
    },
    raw: (query, variables) => post(query, variables),
  };
}
