import type { IncomingMessage, ServerResponse } from 'node:http';
import { type DocumentNode, type ExecutionResult, GraphQLError, getOperationAST } from 'graphql';
import { processRegularResult } from 'graphql-yoga';
import type { GraphQLContext } from '../graphql/context.ts';
import type { EnvelopedYoga } from './websocket.ts';

/**
 * The common GraphQL request (a JSON POST of one query or mutation, no
 * Origin, answered as JSON), run on yoga's own envelop (the same parse and
 * validation caches, limits, error masking and compiled execution) without
 * the Fetch API round trip around it: building a Request from the Node
 * request, negotiating the answer and writing a Response back cost about a
 * third of Dispatch's CPU per sendMessage.
 *
 * It answers exactly as yoga would: results go through yoga's own result
 * processor (status codes, error extensions), and the media type is chosen by
 * yoga's rule. It sees only requests already authenticated (the server
 * refuses the others before reading their body). Everything else, and every
 * request refused before its resolvers run (a parse or validation error, a
 * bad body), goes the whole way through yoga, which then gives the error it
 * always gave.
 */

export type RegularMediaType = 'application/json' | 'application/graphql-response+json';

export interface FastLaneYoga extends EnvelopedYoga {
  fetchAPI: Parameters<typeof processRegularResult>[1];
}

interface Params {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

export type FastLaneOutcome =
  /** Answered. */
  | { kind: 'answered' }
  /** Not for the fast lane: let yoga handle the request from the start. */
  | { kind: 'yoga' };

export interface FastLaneOptions {
  yoga: FastLaneYoga;
  /** What yoga's context adds to an HTTP request's context. */
  extendContext(context: GraphQLContext, req: IncomingMessage, res: ServerResponse): GraphQLContext;
  /** Turns an error thrown by execution into the error the client sees (yoga's maskedErrors). */
  maskError(error: unknown): Error;
  /** Sees every result before it is sent (metrics). */
  onResult(result: ExecutionResult): void;
  /** Writes a Response built by yoga's result processor. */
  sendResponse(response: Response, req: IncomingMessage, res: ServerResponse): Promise<void>;
}

const PROCESSORS: { regular: boolean; mediaTypes: string[] }[] = [
  { regular: false, mediaTypes: ['text/event-stream'] },
  { regular: false, mediaTypes: ['multipart/mixed'] },
  { regular: true, mediaTypes: ['application/graphql-response+json', 'application/json'] },
];

/**
 * The media type yoga answers a single (not streamed) result in, for an
 * Accept header; undefined when yoga would pick a streaming processor or none.
 * The same walk as yoga's result processors: the last match wins.
 */
export function regularMediaType(accept: string | undefined): RegularMediaType | undefined {
  // Clients send the same few Accept headers, request after request.
  const key = accept ?? '';
  if (mediaTypes.has(key)) return mediaTypes.get(key);
  const chosen = negotiate(accept);
  if (mediaTypes.size >= MEDIA_TYPE_CACHE_SIZE) mediaTypes.clear();
  mediaTypes.set(key, chosen);
  return chosen;
}

const MEDIA_TYPE_CACHE_SIZE = 256;
const mediaTypes = new Map<string, RegularMediaType | undefined>();

function negotiate(accept: string | undefined): RegularMediaType | undefined {
  const requested: string[] = [];
  for (const item of (accept || '*/*').replace(/\s/g, '').toLowerCase().split(',')) {
    const [mediaType, ...params] = item.split(';');
    if (mediaType === undefined) continue;
    const charset = params.find((p) => p.includes('charset=')) ?? 'charset=utf-8';
    if (charset === 'charset=utf-8') requested.push(mediaType);
  }
  requested.reverse();
  let chosen: { regular: boolean; mediaType: string } | undefined;
  for (const processor of PROCESSORS) {
    for (const asked of requested) {
      const [askedPre, askedSuf] = asked.split('/');
      for (const mediaType of processor.mediaTypes) {
        const [pre, suf] = mediaType.split('/');
        if ((askedPre === '*' || askedPre === pre) && (askedSuf === '*' || askedSuf === suf))
          chosen = { regular: processor.regular, mediaType };
      }
    }
  }
  return chosen?.regular ? (chosen.mediaType as RegularMediaType) : undefined;
}

/** The parameters of a JSON body yoga would take as they are; undefined for anything else (yoga answers it). */
function plainParams(body: Buffer): Params | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const params = value as Record<string, unknown>;
  for (const key in params) {
    if (params[key] == null) continue;
    if (key !== 'query' && key !== 'variables' && key !== 'operationName') return undefined;
  }
  const { query, variables, operationName } = params;
  if (typeof query !== 'string') return undefined;
  if (variables != null && (typeof variables !== 'object' || Array.isArray(variables))) return undefined;
  if (operationName != null && typeof operationName !== 'string') return undefined;
  return params as unknown as Params;
}

function headerOf(req: IncomingMessage, name: string): string | null {
  const value = req.headers[name.toLowerCase()];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(', ') : value;
}

function isJsonContentType(value: string | undefined): boolean {
  const type = value?.split(',')[0];
  if (!type) return false;
  return ['application/json', 'application/graphql+json'].some((t) => type === t || type.startsWith(`${t};`));
}

export function createFastLane(options: FastLaneOptions) {
  const { yoga } = options;
  let answered = 0;

  /** Runs the request of an authenticated `context` (the server resolves the token before reading the body). */
  async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    context: GraphQLContext,
  ): Promise<FastLaneOutcome> {
    if (req.method !== 'POST' || req.headers.origin !== undefined || !isJsonContentType(req.headers['content-type']))
      return { kind: 'yoga' };
    const mediaType = regularMediaType(req.headers.accept);
    if (!mediaType) return { kind: 'yoga' };
    const params = plainParams(body);
    if (!params) return { kind: 'yoga' };

    // yoga's plugins look at the request in a few envelop hooks (a parse
    // error gets its code and 400 only for an HTTP request, and is cached so);
    // what they read of it is its method and headers.
    const request = { method: 'POST', url: req.url, headers: { get: (name: string) => headerOf(req, name) } };
    const initial: Record<string, unknown> = { req, res, params, request };
    const enveloped = yoga.getEnveloped(initial);
    let document: DocumentNode;
    try {
      document = enveloped.parse(params.query);
      // A limit rule (depth, aliases) throws rather than reporting.
      if (enveloped.validate(enveloped.schema, document).length > 0) return { kind: 'yoga' };
    } catch {
      return { kind: 'yoga' };
    }
    const operation = getOperationAST(document, params.operationName ?? undefined);
    if (!operation || operation.operation === 'subscription') return { kind: 'yoga' };

    // yoga's context option returns this as the request's context.
    initial.dispatch = options.extendContext(context, req, res);

    let result: ExecutionResult;
    try {
      result = (await enveloped.execute({
        schema: enveloped.schema,
        document,
        contextValue: await enveloped.contextFactory(),
        variableValues: params.variables,
        operationName: params.operationName,
      })) as ExecutionResult;
    } catch (error) {
      const masked = options.maskError(error);
      result = {
        errors: [masked instanceof GraphQLError ? masked : new GraphQLError(masked.message, { originalError: masked })],
      };
    }
    answered++;
    options.onResult(result);
    if (!result.errors?.length && !result.extensions) {
      // What yoga's processor writes for a result without errors, with graphql-jit's compiled stringify.
      const stringify = (result as { stringify?: (r: unknown) => string }).stringify ?? JSON.stringify;
      const text = Buffer.from(stringify(result));
      if (!res.writableEnded && !res.destroyed) {
        res
          .writeHead(200, { 'content-type': `${mediaType}; charset=utf-8`, 'content-length': String(text.length) })
          .end(text);
      }
      return { kind: 'answered' };
    }
    await options.sendResponse(processRegularResult(result, yoga.fetchAPI, mediaType) as Response, req, res);
    return { kind: 'answered' };
  }

  return {
    handle,
    /** Requests this lane has answered (the rest went through yoga). */
    answered: () => answered,
  };
}
