import type { IncomingMessage, ServerResponse } from 'node:http';
import { useGraphQlJit } from '@envelop/graphql-jit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { type DocumentNode, GraphQLError, type GraphQLSchema, parse } from 'graphql';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import { LRUCache } from 'lru-cache';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import type { Actor } from '../domain/actor.ts';
import { authenticate } from '../domain/auth.ts';
import type { DeliveryHooks, DomainSettings } from '../domain/context.ts';
import { createLocalLiveBus, type LiveBus, type MessageEvent } from '../live/bus.ts';
import { createLiveFeed } from '../live/feed.ts';
import { createPgLiveBus } from '../live/pg-bus.ts';
import type { Logger } from '../logger.ts';
import { tracingOn } from '../tracing.ts';
import type { GraphQLContext } from './context.ts';
import {
  CACHED_DOCUMENT_CHARS,
  DOCUMENT_CACHE_CHARS,
  estimateNodes,
  MAX_DOCUMENT_TOKENS,
  MAX_QUERY_NODES,
} from './cost.ts';
import { documentNestingPlugin } from './document-nesting.ts';
import { maskError } from './errors.ts';
import { hasVariableInScalarLiteral } from './json-literals.ts';
import { graphqlErrors, graphqlOperations } from './metrics.ts';
import { RateLimiter } from './rate-limit.ts';
import { sharedSubscriptionExecution } from './shared-execution.ts';
import { tracingPlugin } from './tracing.ts';

export interface GraphQLAppDeps {
  config: Config;
  db: Database;
  schema: GraphQLSchema;
  hooks: DeliveryHooks;
  live?: LiveBus;
  logger: Logger;
}

/**
 * What yoga's context starts from: the context of a token already resolved
 * (HTTP requests are authenticated before their body is read; graphql-ws at
 * each subscribe), or, without one, the request to resolve it from.
 */
export type ServerContext =
  | { req: IncomingMessage; res: ServerResponse; dispatch?: GraphQLContext }
  | { dispatch: GraphQLContext };

export type DispatchYoga = YogaServerInstance<ServerContext, GraphQLContext>;

/** GraphQL as one unit: yoga with its plugins, and how a request's token becomes its context. */
export interface GraphQLApp {
  yoga: DispatchYoga;
  /** Resolves the actor of a request's Authorization value (HTTP, the fast lane and graphql-ws alike). */
  contextFor(authorization: string | null | undefined): Promise<GraphQLContext>;
  /** The context of an HTTP request: an SSE subscriber the live feed cuts off loses its connection. */
  withCutOff(context: GraphQLContext, res: ServerResponse): GraphQLContext;
  /** yoga's error masking, logging what it masks. */
  maskError(error: unknown): Error;
  /** Counts a result's errors for /metrics. */
  countErrors(result: unknown): void;
  /** The base of portal URLs, once the server knows the port it listens on (PORT=0). */
  setPublicUrl(url: string): void;
  /** Closes what it opened itself (the in-process bus's LISTEN connection, when it was given no bus). */
  close(): Promise<void>;
}

export class UnauthenticatedError extends GraphQLError {
  constructor() {
    super('a valid API key or portal token is required: Authorization: Bearer <token>', {
      extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
    });
  }
}

/** Counts operations and error codes for /metrics. */
function metricsPlugin(): Plugin {
  return {
    onExecute({ args }) {
      const operation = args.document.definitions.find((d: { kind: string }) => d.kind === 'OperationDefinition');
      const type = operation && 'operation' in operation ? operation.operation : 'unknown';
      graphqlOperations.inc({
        type,
        name:
          (args.operationName ?? (operation && 'name' in operation ? operation.name?.value : undefined)) || 'anonymous',
      });
    },
    onResultProcess({ result }) {
      countErrors(result);
    },
  };
}

function countErrors(result: unknown): void {
  const results = Array.isArray(result) ? result : [result];
  for (const r of results) {
    const errors = (r as { errors?: readonly GraphQLError[] } | undefined)?.errors ?? [];
    for (const e of errors) graphqlErrors.inc({ code: String(e.extensions?.code ?? 'UNKNOWN') });
  }
}

/** Refuses, before any resolver runs, an operation whose pages could add up to more than MAX_QUERY_NODES objects. */
function costPlugin(): Plugin {
  const check = (args: {
    schema: GraphQLSchema;
    document: Parameters<typeof estimateNodes>[1];
    operationName?: string | null;
    variableValues?: Record<string, unknown> | null;
  }) => {
    const nodes = estimateNodes(args.schema, args.document, args.operationName, args.variableValues);
    if (nodes <= MAX_QUERY_NODES) return undefined;
    return new GraphQLError(
      `this operation could return ${nodes} objects; the limit is ${MAX_QUERY_NODES}: ask for smaller pages or fewer nested connections`,
      { extensions: { code: 'BAD_USER_INPUT', cost: nodes, limit: MAX_QUERY_NODES } },
    );
  };
  return {
    onExecute({ args, setResultAndStopExecution }) {
      const error = check(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
    onSubscribe({ args, setResultAndStopExecution }) {
      const error = check(args);
      if (error) setResultAndStopExecution({ errors: [error] });
    },
  };
}

/**
 * Parses with graphql's own token limit (MAX_DOCUMENT_TOKENS), and says so
 * clearly when a document is over it.
 */
function tokenLimitPlugin(): Plugin {
  return {
    onParse({ setParseFn }) {
      setParseFn((source, options) => {
        try {
          return parse(source, { ...options, maxTokens: MAX_DOCUMENT_TOKENS });
        } catch (error) {
          if (!(error instanceof Error) || !/tokens\. Parsing aborted/.test(error.message)) throw error;
          throw new GraphQLError(
            `this document has more than ${MAX_DOCUMENT_TOKENS} tokens; send large values as variables`,
            { extensions: { code: 'BAD_USER_INPUT', limit: MAX_DOCUMENT_TOKENS, http: { status: 400 } } },
          );
        }
      });
    },
  };
}

/**
 * yoga's parse cache (by document text) and what hangs on each parsed
 * document (its validation result, its compiled form), sized by the text's
 * length rather than counted: only documents up to CACHED_DOCUMENT_CHARS are
 * kept, DOCUMENT_CACHE_CHARS of them in all. A larger document is parsed
 * (within the token limit) each time it comes.
 */
function documentCache<V extends object>() {
  return new LRUCache<string, V>({
    max: 1024,
    maxSize: DOCUMENT_CACHE_CHARS,
    maxEntrySize: CACHED_DOCUMENT_CHARS,
    sizeCalculation: (_value, key) => Math.max(1, key.length),
    ttl: 3_600_000,
  });
}

/** Rejections of the depth and alias limits carry no code; they are the client's doing. */
function limitErrorsPlugin(): Plugin {
  return {
    onValidate() {
      return ({ result, setResult }) => {
        if (result.length === 0) return;
        setResult(
          result.map((e) =>
            e.extensions?.code
              ? e
              : new GraphQLError(e.message, {
                  nodes: e.nodes,
                  source: e.source,
                  positions: e.positions,
                  // Keeps yoga's http extension, so a refused document answers 400 as before.
                  extensions: {
                    ...e.extensions,
                    code: /depth|aliases/i.test(e.message) ? 'BAD_USER_INPUT' : 'GRAPHQL_VALIDATION_FAILED',
                  },
                }),
          ),
        );
      };
    },
  };
}

/**
 * Builds yoga (schema, limits, error masking, metrics, shared subscription
 * execution, compiled queries) and the context every transport resolves a
 * token with. The HTTP server routes to it; graphql-ws and the fast lane run
 * on its envelop.
 */
export function createGraphQLApp(deps: GraphQLAppDeps): GraphQLApp {
  const { config, db, logger } = deps;
  const limiter = new RateLimiter(config.apiKeyRateLimit);
  const settings: DomainSettings = {
    maxPayloadBytes: config.maxPayloadBytes,
    publicUrl: config.publicUrl,
    allowNetworks: config.allowNetworks,
  };

  // Every process Dispatch starts has a bus across processes; without one, the feed is this process's own,
  // plus what PostgreSQL announces (endpoint health, operational events) through a LISTEN of its own.
  const live = deps.live ?? createLocalLiveBus({ database: createPgLiveBus({ url: db.url, pool: db.pool, logger }) });
  const ownBus = deps.live ? undefined : live;
  const events = { messageCreated: (message: MessageEvent) => void live.publishMessage(message) };
  const feed = createLiveFeed({
    bus: live,
    prisma: db.prisma,
    pool: db.pool,
    maxPerCredential: config.maxSubscriptionsPerCredential,
  });

  function contextForActor(actor: Actor): GraphQLContext {
    return {
      actor,
      live: feed,
      domain: { prisma: db.prisma, pool: db.pool, actor, settings, hooks: deps.hooks, events },
    };
  }

  async function contextFor(authorization: string | null | undefined): Promise<GraphQLContext> {
    const actor = await authenticate(db.prisma, authorization);
    if (!actor) throw new UnauthenticatedError();
    if (actor.kind === 'operator' && !limiter.take(actor.apiKeyId)) {
      throw new GraphQLError(`this API key is over its rate of ${config.apiKeyRateLimit} requests per second`, {
        extensions: { code: 'RATE_LIMITED', http: { status: 429, headers: { 'retry-after': '1' } } },
      });
    }
    return contextForActor(actor);
  }

  // An SSE subscriber cut off gets the error as its last event; one that does not read at all loses the connection.
  const withCutOff = (context: GraphQLContext, res: ServerResponse): GraphQLContext => ({
    ...context,
    cutOff: () => setTimeout(() => res.writableFinished || res.destroy(), 2_000).unref(),
  });
  const maskErrorLogged = (error: unknown) => maskError(error, (message, e) => logger.error(message, e));

  // Only the listed origins get CORS headers (without credentials: the token is a header, not a cookie);
  // the server refuses other foreign origins before yoga sees them.
  const corsOrigins = new Set(config.corsOrigins);
  const yoga = createYoga<ServerContext, GraphQLContext>({
    schema: deps.schema,
    cors: (request) => {
      const origin = request.headers.get('origin');
      if (origin === null || !corsOrigins.has(origin)) return false;
      return {
        origin: [origin],
        credentials: false,
        methods: ['GET', 'POST'],
        allowedHeaders: ['authorization', 'content-type', 'accept'],
        maxAge: 600,
      };
    },
    graphqlEndpoint: '/graphql',
    landingPage: false,
    graphiql: false,
    logging: false,
    // The HTTP server reads and limits every body itself (chunked ones too)
    // before yoga sees it; yoga's own limit would pipe each body through a stream again.
    maxRequestBodySize: false,
    context: async (initial) => {
      if (initial.dispatch) return initial.dispatch;
      if (!('res' in initial)) throw new UnauthenticatedError();
      return withCutOff(await contextFor(initial.request.headers.get('authorization')), initial.res);
    },
    maskedErrors: { maskError: maskErrorLogged },
    parserAndValidationCache: {
      documentCache: documentCache<DocumentNode>(),
      errorCache: documentCache<Error>(),
      validationCache: true,
    },
    plugins: [
      documentNestingPlugin(),
      tokenLimitPlugin(),
      maxDepthPlugin({ n: 12, exposeLimits: true }),
      maxAliasesPlugin({ n: 20, exposeLimits: true }),
      costPlugin(),
      limitErrorsPlugin(),
      metricsPlugin(),
      sharedSubscriptionExecution(),
      // Queries and mutations run compiled (cached per parsed document): about 10 % less
      // of Dispatch's CPU per sendMessage. Subscriptions keep the shared execution above.
      useGraphQlJit(
        {},
        {
          enableIf: (args) =>
            !args.document.definitions.some(
              (d) => d.kind === 'OperationDefinition' && d.operation === 'subscription',
            ) &&
            // graphql-jit compiles a literal without the variables inside it (data: {id: $v}); such documents run on graphql-js.
            !hasVariableInScalarLiteral(args.schema, args.document),
        },
      ),
      // Last, so the execution it wraps is the compiled one.
      ...(tracingOn() ? [tracingPlugin()] : []),
    ],
  });

  return {
    yoga,
    contextFor,
    withCutOff,
    maskError: maskErrorLogged,
    countErrors,
    setPublicUrl: (url) => {
      settings.publicUrl = url;
    },
    close: async () => {
      await ownBus?.close();
    },
  };
}
