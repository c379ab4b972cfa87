import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { useGraphQlJit } from '@envelop/graphql-jit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { sendNodeResponse } from '@whatwg-node/server';
import { GraphQLError, type GraphQLSchema } from 'graphql';
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import { pendingMigrations } from '../db/migrate.ts';
import type { Actor } from '../domain/actor.ts';
import { authenticate } from '../domain/auth.ts';
import type { DeliveryHooks } from '../domain/context.ts';
import type { GraphQLContext } from '../graphql/context.ts';
import { estimateNodes, MAX_QUERY_NODES } from '../graphql/cost.ts';
import { documentNestingPlugin } from '../graphql/document-nesting.ts';
import { hasVariableInScalarLiteral } from '../graphql/json-literals.ts';
import { sharedSubscriptionExecution } from '../graphql/shared-execution.ts';
import type { LiveBus, MessageEvent } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { registry } from '../metrics.ts';
import { hasNulCharacter, maskError, NUL_MESSAGE } from './errors.ts';
import { createFastLane } from './fast-lane.ts';
import { graphqlErrors, graphqlOperations, httpDuration, httpRequests } from './metrics.ts';
import { RateLimiter } from './rate-limit.ts';
import { attachGraphQLWebSocket } from './websocket.ts';

export interface HttpDeps {
  config: Config;
  db: Database;
  schema: GraphQLSchema;
  hooks: DeliveryHooks;
  live?: LiveBus;
  logger: Logger;
  /** Serves the API (GraphQL, portal); a worker-only process serves health and metrics alone. */
  api: boolean;
  /** Extra readiness checks of the roles in this process (queue started, …). */
  readiness?: () => Promise<string | null>;
  /** Other routes (the portal's static files) tried before 404. */
  extraRoutes?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean> | boolean;
}

export interface HttpServer {
  server: Server;
  yoga: YogaServerInstance<ServerContext, GraphQLContext> | undefined;
  /** GraphQL requests answered by the fast lane (the rest went through yoga). */
  fastLaneAnswered(): number;
  /** Resolves the actor of a request's Authorization value (shared with the WebSocket server). */
  contextFor(authorization: string | null | undefined): Promise<GraphQLContext>;
  listen(port: number, host: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * What yoga's context starts from: the HTTP request, the context of a token
 * already resolved (graphql-ws, the fast lane), or the error resolving it
 * raised in the fast lane, which yoga then answers with.
 */
type ServerContext =
  | { req: IncomingMessage; res: ServerResponse; contextError?: unknown }
  | { dispatch: GraphQLContext };

export class UnauthenticatedError extends GraphQLError {
  constructor() {
    super('a valid API key or portal token is required: Authorization: Bearer <token>', {
      extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
    });
  }
}

function graphqlErrorBody(status: number, message: string, code: string): string {
  return JSON.stringify({ errors: [{ message, extensions: { code, http: { status } } }] });
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

/** The request body, or null once it grows past `limit` (the rest is drained and dropped). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? null : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function createHttpServer(deps: HttpDeps): HttpServer {
  const { config, db, logger } = deps;
  const limiter = new RateLimiter(config.apiKeyRateLimit);
  const settings = {
    maxPayloadBytes: config.maxPayloadBytes,
    publicUrl: config.publicUrl,
    allowNetworks: config.allowNetworks,
  };

  const live = deps.live;
  const events = live ? { messageCreated: (message: MessageEvent) => void live.publishMessage(message) } : undefined;

  function contextForActor(actor: Actor): GraphQLContext {
    return {
      actor,
      live: deps.live,
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

  const yoga = deps.api
    ? createYoga<ServerContext, GraphQLContext>({
        schema: deps.schema,
        graphqlEndpoint: '/graphql',
        landingPage: false,
        graphiql: false,
        logging: false,
        // handle() reads and limits every body itself (chunked ones too) before
        // yoga sees it; yoga's own limit would pipe each body through a stream again.
        maxRequestBodySize: false,
        context: async (initial) => {
          if ('dispatch' in initial) return initial.dispatch;
          if (initial.contextError !== undefined) throw initial.contextError;
          return withCutOff(await contextFor(initial.request.headers.get('authorization')), initial.res);
        },
        maskedErrors: { maskError: maskErrorLogged },
        plugins: [
          documentNestingPlugin(),
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
                ) && !hasVariableInScalarLiteral(args.schema, args.document),
            },
          ),
        ],
      })
    : undefined;
  const fastLane = yoga
    ? createFastLane({
        yoga,
        contextFor,
        extendContext: (context, _req, res) => withCutOff(context, res),
        maskError: maskErrorLogged,
        onResult: countErrors,
        sendResponse,
      })
    : undefined;

  async function ready(): Promise<string | null> {
    try {
      const pending = await pendingMigrations(db.pool);
      if (pending.length) return `migrations pending: ${pending.join(', ')}`;
    } catch (error) {
      return `database unreachable: ${(error as Error).message}`;
    }
    return (await deps.readiness?.()) ?? null;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<string> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/healthz') {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ status: 'ok', role: config.role }));
      return 'healthz';
    }
    if (url.pathname === '/readyz') {
      const problem = await ready();
      res
        .writeHead(problem ? 503 : 200, { 'content-type': 'application/json' })
        .end(JSON.stringify(problem ? { status: 'unavailable', reason: problem } : { status: 'ready' }));
      return 'readyz';
    }
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
      return 'metrics';
    }
    if (yoga && url.pathname === '/graphql') {
      let contextError: unknown;
      const length = Number(req.headers['content-length'] ?? 0);
      if (length > config.maxRequestBytes) {
        res
          .writeHead(413, { 'content-type': 'application/json', connection: 'close' })
          .end(graphqlErrorBody(413, `request body is over ${config.maxRequestBytes} bytes`, 'PAYLOAD_TOO_LARGE'));
        req.resume();
        return 'graphql';
      }
      if (req.method === 'POST') {
        // Read the body here, counting as it arrives, so a body of unknown
        // length (chunked) meets the same limit; yoga takes it as read.
        const body = await readBody(req, config.maxRequestBytes);
        if (body === null) {
          res
            .writeHead(413, { 'content-type': 'application/json', connection: 'close' })
            .end(graphqlErrorBody(413, `request body is over ${config.maxRequestBytes} bytes`, 'PAYLOAD_TOO_LARGE'));
          return 'graphql';
        }
        if (hasNulCharacter(body)) {
          res
            .writeHead(400, { 'content-type': 'application/json' })
            .end(graphqlErrorBody(400, NUL_MESSAGE, 'BAD_USER_INPUT'));
          return 'graphql';
        }
        const outcome = await fastLane!.handle(req, res, body);
        if (outcome.kind === 'answered') return 'graphql';
        if (outcome.kind === 'context-error') contextError = outcome.error;
        delete req.headers['transfer-encoding'];
        req.headers['content-length'] = String(body.length);
        (req as IncomingMessage & { body?: Uint8Array }).body = body;
      }
      const response = await yoga.handleNodeRequestAndResponse(
        req,
        res,
        contextError === undefined ? { req, res } : { req, res, contextError },
      );
      await sendResponse(response, req, res);
      return 'graphql';
    }
    if (deps.extraRoutes && (await deps.extraRoutes(req, res))) return 'static';
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
    return 'not_found';
  }

  const server = createServer((req, res) => {
    const end = httpDuration.startTimer();
    handle(req, res)
      .then((route) => {
        end({ route });
        httpRequests.inc({ route, status: String(res.statusCode) });
      })
      .catch((error) => {
        logger.error('http handler failed', error);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'internal error' }));
        httpRequests.inc({ route: 'error', status: '500' });
      });
  });
  server.keepAliveTimeout = 65_000;
  // Subscriptions over WebSocket on the same path; SSE is yoga's own (Accept: text/event-stream).
  const websocket = yoga
    ? attachGraphQLWebSocket({
        server,
        path: '/graphql',
        yoga,
        contextFor,
        logger,
        maxPayloadBytes: config.maxRequestBytes,
      })
    : undefined;

  return {
    server,
    yoga,
    fastLaneAnswered: () => fastLane?.answered() ?? 0,
    contextFor,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const actual = (server.address() as AddressInfo).port;
          if (config.publicUrlFollowsPort) settings.publicUrl = `http://localhost:${actual}`;
          resolve(actual);
        });
      }),
    close: async () => {
      await websocket?.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
    },
  };
}

/**
 * Writes yoga's response. A whole response (every query and mutation) goes
 * out as one write with its length, where the generic path writes head and
 * body, then the end of a chunked body, through a stream pipeline: about one
 * syscall and one stream less per request on the sendMessage path. Streams
 * (SSE, incremental delivery) keep the generic path.
 */
async function sendResponse(response: Response, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const type = response.headers.get('content-type') ?? '';
  if (!response.body || type.startsWith('text/event-stream') || type.startsWith('multipart/')) {
    await sendNodeResponse(response, res, req, false);
    return;
  }
  const body = Buffer.from(await response.arrayBuffer());
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, key) => {
    if (key !== 'set-cookie') headers[key] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length) headers['set-cookie'] = cookies;
  headers['content-length'] = String(body.length);
  if (!res.writableEnded && !res.destroyed) res.writeHead(response.status, headers).end(body);
}
