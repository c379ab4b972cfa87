import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { type ExecutionArgs, GraphQLError } from 'graphql';
import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import { type WebSocket, WebSocketServer } from 'ws';
import type { GraphQLContext } from '../graphql/context.ts';
import type { Logger } from '../logger.ts';
import { type OriginPolicy, originRefusedMessage } from './origins.ts';

/** What yoga's envelop needs to run an operation arriving on a socket. */
export interface EnvelopedYoga {
  getEnveloped(initial: Record<string, unknown>): {
    schema: ExecutionArgs['schema'];
    execute: (args: ExecutionArgs) => unknown;
    subscribe: (args: ExecutionArgs) => unknown;
    contextFactory: () => Promise<unknown> | unknown;
    parse: (source: string) => ExecutionArgs['document'];
    validate: (schema: ExecutionArgs['schema'], document: ExecutionArgs['document']) => readonly GraphQLError[];
  };
}

export interface GraphQLWebSocketOptions {
  server: Server;
  path: string;
  yoga: EnvelopedYoga;
  contextFor(authorization: string | null | undefined): Promise<GraphQLContext>;
  logger: Logger;
  maxPayloadBytes: number;
  /** Operations (subscriptions, and queries in flight) one socket may have open; more are refused with RATE_LIMITED. */
  maxOperationsPerSocket: number;
  /** Upgrades from a browser origin the policy refuses are answered 403. */
  origins: OriginPolicy;
  /**
   * Bytes a socket may have queued but unsent before its client counts as not
   * reading and is cut off. graphql-ws waits to send a subscription's next
   * event while a socket has SEND_HIGH_WATER_BYTES unsent, so this bounds the
   * few messages of many concurrent subscriptions on one socket.
   */
  maxBufferedBytes?: number;
}

/** What graphql-ws hands our hooks besides the message: the socket and its upgrade request. */
interface Extra {
  socket: WebSocket;
  request: IncomingMessage;
}

/** Unsent bytes on a socket below which a message counts as sent as soon as it is queued. */
const SEND_HIGH_WATER_BYTES = 64 * 1024;
/** Ping interval; a client that has not answered the previous ping by the next one is dropped. */
const KEEP_ALIVE_MS = 12_000;

/**
 * A graphql-ws `send` that batches. graphql-ws awaits each send before it
 * pulls the subscription's next event; waiting for every message to reach
 * the kernel made one write() per message, and at 50 subscribers x 1,000
 * events/s those writes (through loopback TCP) were half of the API's CPU.
 * So a message counts as sent once queued while the socket has little
 * unsent, and the TCP socket is corked until the end of the tick: the
 * messages of one tick leave in one write. A client that stops reading
 * still makes graphql-ws wait (unsent bytes stay above the mark), so its
 * events pile up in its bounded SubscriberQueue and it is cut off there.
 */
function batchingSend(socket: WebSocket, tcp: Socket) {
  let corked = false;
  return (data: string) =>
    new Promise<void>((resolve, reject) => {
      if (socket.readyState !== socket.OPEN) return resolve();
      if (!corked) {
        corked = true;
        tcp.cork();
        process.nextTick(() => {
          corked = false;
          tcp.uncork();
        });
      }
      if (socket.bufferedAmount < SEND_HIGH_WATER_BYTES) {
        // A write failing later closes the socket, which graphql-ws hears about.
        socket.send(data, () => undefined);
        resolve();
      } else {
        socket.send(data, (error) => (error ? reject(error) : resolve()));
      }
    });
}

/**
 * graphql-ws's server on a `ws` server: what graphql-ws/use/ws does (protocol
 * negotiation, keep-alive pings, closing on internal errors), with the
 * batching send above.
 */
function serveGraphQLWs(wss: WebSocketServer, options: ServerOptions<Record<string, unknown>, Extra>, logger: Logger) {
  const server = makeServer(options);
  wss.options.handleProtocols = handleProtocols;
  const internalError = (socket: WebSocket, what: string, error: unknown) => {
    logger.error(`graphql-ws: ${what}`, error);
    socket.close(CloseCode.InternalServerError, 'Internal server error');
  };
  wss.on('connection', (socket: WebSocket, request: IncomingMessage) => {
    socket.once('error', (error) => internalError(socket, 'socket error', error));
    let answered = true;
    const keepAlive = setInterval(() => {
      if (!answered) return socket.terminate();
      answered = false;
      socket.ping();
    }, KEEP_ALIVE_MS);
    socket.on('pong', () => (answered = true));
    const closed = server.opened(
      {
        protocol: socket.protocol,
        send: batchingSend(socket, request.socket),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) =>
          socket.on('message', async (data) => {
            try {
              await handle(String(data));
            } catch (error) {
              internalError(socket, 'message handling failed', error);
            }
          }),
      },
      { socket, request },
    );
    socket.once('close', (code, reason) => {
      clearInterval(keepAlive);
      void closed(code, String(reason));
    });
  });
  return {
    async dispose() {
      for (const client of wss.clients) client.close(1001, 'Going away');
      wss.removeAllListeners();
      await new Promise<void>((resolve, reject) => wss.close((error) => (error ? reject(error) : resolve())));
    },
  };
}

type EnvelopedArgs = ExecutionArgs & { execute(args: ExecutionArgs): unknown; subscribe(args: ExecutionArgs): unknown };

/** Close codes, in graphql-ws's 4xxx range; reasons must stay under 123 bytes. */
export const WS_CLOSE = {
  unauthenticated: {
    code: 4401,
    reason: 'UNAUTHENTICATED: connectionParams.authorization must be "Bearer <API key or portal token>"',
  },
  rateLimited: { code: 4429, reason: 'RATE_LIMITED: this API key is over its request rate' },
  slowConsumer: { code: 4429, reason: 'RATE_LIMITED: the client is not reading its socket; cut off' },
} as const;

/** Close reasons are limited to 123 bytes. */
function closeReason(code: string, text: string): string {
  const prefixed = `${code}: ${text}`;
  return Buffer.byteLength(prefixed) <= 123
    ? prefixed
    : `${Buffer.from(prefixed)
        .subarray(0, 120)
        .toString('utf8')
        .replace(/\uFFFD$/, '')}...`;
}

/** A thrown DispatchError/GraphQLError as a close reason, when it is one the client should see. */
function codeOf(error: unknown): string | undefined {
  const code = (error as GraphQLError | undefined)?.extensions?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * GraphQL over WebSocket (graphql-ws protocol) on the HTTP server's `path`,
 * sharing yoga's envelop (so its plugins, error masking and limits apply).
 * The token comes in `connectionParams.authorization`; a socket without a
 * valid one is closed at connection_init with 4401. It is authenticated
 * again at every subscribe, so a revoked key or expired portal session
 * cannot start new operations on an old socket (and the live feed ends the
 * open ones, closing the socket with 4401).
 */
export function attachGraphQLWebSocket(options: GraphQLWebSocketOptions): { close(): Promise<void> } {
  const { logger } = options;
  const maxBuffered = options.maxBufferedBytes ?? 4 * 1024 * 1024;
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayloadBytes });
  const authorizationOf = new WeakMap<WebSocket, string>();

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (url.pathname !== options.path) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    // Browsers let any page open a WebSocket to any host: the Origin is checked here, as CORS does for HTTP.
    if (options.origins.classify(request) === 'refused') {
      const body = JSON.stringify({
        errors: [{ message: originRefusedMessage(String(request.headers.origin)), extensions: { code: 'FORBIDDEN' } }],
      });
      socket.end(
        `HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request));
  };
  options.server.on('upgrade', onUpgrade);

  const closeWith = (socket: WebSocket, close: { code: number; reason: string }) => {
    socket.close(close.code, close.reason);
    // A client that does not read never answers the close frame either.
    setTimeout(() => socket.terminate(), 2_000).unref();
  };

  const disposable = serveGraphQLWs(
    wss,
    {
      execute: (args) => (args as EnvelopedArgs).execute(args) as never,
      subscribe: (args) => (args as EnvelopedArgs).subscribe(args) as never,
      onConnect: async (ctx) => {
        const authorization = ctx.connectionParams?.authorization;
        try {
          await options.contextFor(typeof authorization === 'string' ? authorization : null);
        } catch (error) {
          closeWith(
            ctx.extra.socket,
            codeOf(error) === 'RATE_LIMITED' ? WS_CLOSE.rateLimited : WS_CLOSE.unauthenticated,
          );
          return false;
        }
        authorizationOf.set(ctx.extra.socket, authorization as string);
        return true;
      },
      onSubscribe: async (ctx, _id, payload) => {
        // graphql-ws lists this operation among the socket's own before asking.
        if (Object.keys(ctx.subscriptions).length > options.maxOperationsPerSocket) {
          return [
            new GraphQLError(
              `this socket already has ${options.maxOperationsPerSocket} operations open; complete some before subscribing again`,
              { extensions: { code: 'RATE_LIMITED', limit: options.maxOperationsPerSocket } },
            ),
          ];
        }
        let context: GraphQLContext;
        try {
          context = await options.contextFor(authorizationOf.get(ctx.extra.socket));
        } catch (error) {
          if (codeOf(error)) return [error as GraphQLError];
          throw error;
        }
        const enveloped = options.yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
          dispatch: {
            ...context,
            cutOff: (reason: string, code: 'RATE_LIMITED' | 'UNAUTHENTICATED' = 'RATE_LIMITED') =>
              closeWith(ctx.extra.socket, {
                code: code === 'UNAUTHENTICATED' ? 4401 : 4429,
                reason: closeReason(code, reason),
              }),
          },
        });
        let document: ExecutionArgs['document'];
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          // A limit's refusal keeps its own code (BAD_USER_INPUT for too many tokens).
          const code = codeOf(error) ?? 'GRAPHQL_PARSE_FAILED';
          return [new GraphQLError((error as Error).message, { extensions: { code } })];
        }
        const errors = enveloped.validate(enveloped.schema, document);
        if (errors.length) return errors;
        const args: EnvelopedArgs = {
          schema: enveloped.schema,
          operationName: payload.operationName,
          document,
          variableValues: payload.variables,
          contextValue: await enveloped.contextFactory(),
          execute: enveloped.execute,
          subscribe: enveloped.subscribe,
        };
        return args;
      },
      onNext: (ctx) => {
        const socket = ctx.extra.socket;
        if (socket.bufferedAmount > maxBuffered && socket.readyState === socket.OPEN) {
          logger.warn(`live feed: a WebSocket client has ${socket.bufferedAmount} bytes unread; closing it`);
          closeWith(socket, WS_CLOSE.slowConsumer);
        }
      },
    },
    logger,
  );

  return {
    async close() {
      options.server.off('upgrade', onUpgrade);
      for (const client of wss.clients) closeWith(client, { code: 1001, reason: 'server shutting down' });
      await disposable.dispose();
    },
  };
}
