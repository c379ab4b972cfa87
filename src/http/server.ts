import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sendNodeResponse } from '@whatwg-node/server';
import { GraphQLError, type GraphQLSchema } from 'graphql';
import type { Config } from '../config.ts';
import type { Database } from '../db/client.ts';
import { pendingMigrations } from '../db/migrate.ts';
import type { DeliveryHooks } from '../domain/context.ts';
import type { GraphQLContext } from '../graphql/context.ts';
import { graphqlErrors } from '../graphql/metrics.ts';
import { createGraphQLApp, type DispatchYoga } from '../graphql/yoga.ts';
import type { LiveBus } from '../live/bus.ts';
import type { Logger } from '../logger.ts';
import { registry } from '../metrics.ts';
import { inRequestContext } from '../tracing.ts';
import { hasNulCharacter, NUL_MESSAGE } from './errors.ts';
import { createFastLane, regularMediaType } from './fast-lane.ts';
import { httpDuration, httpRequests } from './metrics.ts';
import { createOriginPolicy, originRefusedMessage } from './origins.ts';
import { createSchemaRoute, SCHEMA_PATH } from './schema-route.ts';
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
  yoga: DispatchYoga | undefined;
  /** GraphQL requests answered by the fast lane (the rest went through yoga). */
  fastLaneAnswered(): number;
  /** Resolves the actor of a request's Authorization value (shared with the WebSocket server). */
  contextFor(authorization: string | null | undefined): Promise<GraphQLContext>;
  listen(port: number, host: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * Answers a request whose token resolved to no context (UNAUTHENTICATED, or
 * RATE_LIMITED for a key over its rate) as yoga answers errors, without
 * reading its body: the rest of it is drained and dropped.
 */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  thrown: unknown,
  maskError: (error: unknown) => Error,
): void {
  // Anything else (the database unreachable while looking the token up) is masked as yoga would: SERVICE_UNAVAILABLE.
  const masked = thrown instanceof GraphQLError ? thrown : maskError(thrown);
  const error = masked instanceof GraphQLError ? masked : new GraphQLError(masked.message);
  const http = (error.extensions.http ?? {}) as { status?: number; headers?: Record<string, string> };
  const { http: _http, ...extensions } = error.extensions;
  const body = JSON.stringify({ errors: [{ message: error.message, extensions }] });
  graphqlErrors.inc({ code: String(extensions.code) });
  res
    .writeHead(http.status ?? (extensions.code === 'UNAUTHENTICATED' ? 401 : 500), {
      ...http.headers,
      'content-type': `${regularMediaType(req.headers.accept) ?? 'application/json'}; charset=utf-8`,
      'content-length': String(Buffer.byteLength(body)),
    })
    .end(body);
  req.resume();
}

function graphqlErrorBody(status: number, message: string, code: string): string {
  return JSON.stringify({ errors: [{ message, extensions: { code, http: { status } } }] });
}

/**
 * The body already read, as yoga's request adapter takes it. Not the Buffer
 * itself: the adapter tests a body with Object.keys(), which for a Buffer of
 * 2 MB makes two million strings (2 s of CPU and garbage per request); an
 * object with one key that iterates the Buffer is taken as the body at once.
 */
function bodyForYoga(body: Buffer) {
  return {
    body,
    async *[Symbol.asyncIterator]() {
      yield body;
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
  const app = deps.api ? createGraphQLApp(deps) : undefined;
  let publicUrl = config.publicUrl;
  const origins = createOriginPolicy({ allowed: config.corsOrigins, publicUrl: () => publicUrl });
  const yoga = app?.yoga;
  const contextFor = (authorization: string | null | undefined): Promise<GraphQLContext> => {
    if (!app) throw new Error('this process does not serve the API');
    return app.contextFor(authorization);
  };
  const fastLane = app
    ? createFastLane({
        yoga: app.yoga,
        extendContext: (context, _req, res) => app.withCutOff(context, res),
        maskError: app.maskError,
        onResult: app.countErrors,
        sendResponse,
      })
    : undefined;

  const schemaRoute = app ? createSchemaRoute(deps.schema, contextFor, app.maskError) : undefined;

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
    if (schemaRoute && url.pathname === SCHEMA_PATH) {
      await schemaRoute(req, res);
      return 'schema';
    }
    if (app && url.pathname === '/graphql') {
      if (origins.classify(req) === 'refused') {
        res
          .writeHead(403, { 'content-type': 'application/json', vary: 'Origin' })
          .end(graphqlErrorBody(403, originRefusedMessage(String(req.headers.origin)), 'FORBIDDEN'));
        req.resume();
        return 'graphql';
      }
      const length = Number(req.headers['content-length'] ?? 0);
      if (length > config.maxRequestBytes) {
        res
          .writeHead(413, { 'content-type': 'application/json', connection: 'close' })
          .end(graphqlErrorBody(413, `request body is over ${config.maxRequestBytes} bytes`, 'PAYLOAD_TOO_LARGE'));
        req.resume();
        return 'graphql';
      }
      // A CORS preflight carries no credentials; yoga answers it.
      if (req.method === 'OPTIONS') {
        await sendResponse(await app.yoga.handleNodeRequestAndResponse(req, res, { req, res }), req, res);
        return 'graphql';
      }
      // The token first, before the body is read or its document parsed: a
      // request without a valid one costs a lookup of its token, whatever it sends.
      let context: GraphQLContext;
      try {
        context = await app.contextFor(req.headers.authorization);
      } catch (error) {
        refuse(req, res, error, app.maskError);
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
        if ((await fastLane!.handle(req, res, body, context)).kind === 'answered') return 'graphql';
        delete req.headers['transfer-encoding'];
        req.headers['content-length'] = String(body.length);
        (req as IncomingMessage & { body?: unknown }).body = bodyForYoga(body);
      }
      const response = await app.yoga.handleNodeRequestAndResponse(req, res, {
        req,
        res,
        dispatch: app.withCutOff(context, res),
      });
      await sendResponse(response, req, res);
      return 'graphql';
    }
    if (deps.extraRoutes && (await deps.extraRoutes(req, res))) return 'static';
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
    return 'not_found';
  }

  const server = createServer((req, res) => {
    const end = httpDuration.startTimer();
    // With tracing on, the request's spans continue the caller's trace (its traceparent header).
    inRequestContext(req.headers, () => handle(req, res))
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
  const websocket = app
    ? attachGraphQLWebSocket({
        server,
        path: '/graphql',
        yoga: app.yoga,
        contextFor: app.contextFor,
        logger,
        maxPayloadBytes: config.maxRequestBytes,
        maxOperationsPerSocket: config.maxSubscriptionsPerSocket,
        origins,
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
          if (config.publicUrlFollowsPort) {
            publicUrl = `http://localhost:${actual}`;
            app?.setPublicUrl(publicUrl);
          }
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
      await app?.close();
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
