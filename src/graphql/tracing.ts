import { type ExecutionResult, getOperationAST, Kind } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { SpanKind, SpanStatusCode, startSpan, withSpan } from '../tracing.ts';

/**
 * One span per query or mutation (HTTP and the fast lane alike), named as
 * OpenTelemetry's GraphQL conventions say (`mutation SendMessage`), current
 * while its resolvers run, so what they do (a message's group commit, the
 * jobs of its tries) is part of the request's trace. Its parent is the
 * request's traceparent header when it has one (http/server.ts). Added only
 * when tracing is on.
 */
export function tracingPlugin(): Plugin {
  return {
    onExecute({ args, executeFn, setExecuteFn }) {
      const operation = getOperationAST(args.document, args.operationName ?? undefined);
      const type = operation?.operation ?? 'query';
      const name = args.operationName ?? operation?.name?.value;
      const fields = (operation?.selectionSet.selections ?? []).flatMap((s) =>
        s.kind === Kind.FIELD ? [s.name.value] : [],
      );
      const span = startSpan(`${type} ${name ?? fields.join(',')}`.trim(), {
        kind: SpanKind.SERVER,
        attributes: {
          'graphql.operation.type': type,
          ...(name ? { 'graphql.operation.name': name } : {}),
          'dispatch.graphql.fields': fields,
        },
      });
      if (!span) return;
      setExecuteFn((execution) => withSpan(span, () => executeFn(execution)));
      return {
        onExecuteDone({ result }) {
          const errors = (result as ExecutionResult).errors;
          if (errors?.length) {
            const codes = [...new Set(errors.map((e) => String(e.extensions?.code ?? 'INTERNAL_SERVER_ERROR')))];
            span.setAttribute('dispatch.graphql.error_codes', codes);
            span.setStatus({ code: SpanStatusCode.ERROR, message: errors[0]!.message });
          }
          span.end();
        },
      };
    },
  };
}
