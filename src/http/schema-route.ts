import type { IncomingMessage, ServerResponse } from 'node:http';
import { type GraphQLSchema, lexicographicSortSchema, printSchema } from 'graphql';
import type { GraphQLContext } from '../graphql/context.ts';

export const SCHEMA_PATH = '/graphql/schema.graphql';

/** The schema as schema.graphql has it (sorted, with a final newline): one printer for the file, this route and `dispatch schema`. */
export function printSchemaText(schema: GraphQLSchema): string {
  return `${printSchema(lexicographicSortSchema(schema))}\n`;
}

/**
 * GET /graphql/schema.graphql: the printed schema (the same text as the
 * repository's schema.graphql), so a backend in another repository can run its
 * own codegen. API keys only: no token, a bad one or a portal token is refused
 * with a GraphQL error body, as /graphql refuses them.
 */
export function createSchemaRoute(
  schema: GraphQLSchema,
  contextFor: (authorization: string | null | undefined) => Promise<GraphQLContext>,
  maskError: (error: unknown) => Error,
) {
  let printed: string | undefined;
  return async function serveSchema(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      refuse(res, 405, 'only GET serves the schema', 'BAD_REQUEST', { allow: 'GET, HEAD' });
      return;
    }
    let context: GraphQLContext;
    try {
      context = await contextFor(req.headers.authorization);
    } catch (error) {
      const masked = maskError(error) as Error & { extensions?: Record<string, unknown> };
      const http = (masked.extensions?.http ?? {}) as { status?: number; headers?: Record<string, string> };
      refuse(
        res,
        http.status ?? 500,
        masked.message,
        String(masked.extensions?.code ?? 'INTERNAL_SERVER_ERROR'),
        http.headers,
      );
      return;
    }
    if (context.actor.kind !== 'operator') {
      refuse(res, 403, 'the schema is served to API keys only, not to portal tokens', 'FORBIDDEN');
      return;
    }
    printed ??= printSchemaText(schema);
    res.writeHead(200, {
      'content-type': 'application/graphql; charset=utf-8',
      'content-length': Buffer.byteLength(printed),
      'cache-control': 'private, no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : printed);
  };
}

function refuse(res: ServerResponse, status: number, message: string, code: string, headers?: Record<string, string>) {
  res
    .writeHead(status, { 'content-type': 'application/json', ...headers })
    .end(JSON.stringify({ errors: [{ message, extensions: { code, http: { status } } }] }));
}
