import { PothosValidationError } from '@pothos/core';
import { GraphQLError } from 'graphql';
import { isDatabaseUnavailable, isUnstorableText } from '../db/client.ts';
import { DispatchError } from '../domain/errors.ts';

/**
 * Turns what a resolver threw into what the client sees: our own errors keep
 * their message and code; input validation becomes BAD_USER_INPUT; anything
 * else is logged and masked.
 */
/** graphql-js may be loaded twice (its CommonJS and ESM builds), so classes are compared by name too. */
function isGraphQLError(error: unknown): error is GraphQLError {
  return error instanceof GraphQLError || (error instanceof Error && error.name === 'GraphQLError');
}

export function maskError(error: unknown, log: (message: string, error: unknown) => void): Error {
  const graphqlError = isGraphQLError(error) ? error : undefined;
  const original = graphqlError?.originalError ?? error;
  const at = {
    nodes: graphqlError?.nodes,
    path: graphqlError?.path,
    positions: graphqlError?.positions,
    source: graphqlError?.source,
  };
  if (original instanceof DispatchError) {
    return new GraphQLError(original.message, {
      ...at,
      extensions: {
        code: original.code,
        ...(original.details ?? {}),
        ...(original.code === 'SERVICE_UNAVAILABLE' ? { http: { status: 503, headers: { 'retry-after': '1' } } } : {}),
      },
    });
  }
  if (original instanceof PothosValidationError) {
    return new GraphQLError(original.message, { ...at, extensions: { code: 'BAD_USER_INPUT' } });
  }
  if (isGraphQLError(original)) {
    // Errors graphql-js raises for bad input (scalar parsing, variables) already carry a code or are the client's fault.
    if (original.extensions?.code) return original;
    return new GraphQLError(original.message, { ...at, extensions: { code: 'BAD_USER_INPUT' } });
  }
  if (graphqlError && !graphqlError.originalError) {
    return graphqlError.extensions?.code
      ? graphqlError
      : new GraphQLError(graphqlError.message, { ...at, extensions: { code: 'BAD_USER_INPUT' } });
  }
  if (isDatabaseUnavailable(original)) {
    // Not a bug to mask: the client should retry (a sendMessage with the same messageId deduplicates).
    log('database unavailable', original instanceof Error ? original.message : original);
    return new GraphQLError('the database is unavailable; try again shortly', {
      ...at,
      extensions: { code: 'SERVICE_UNAVAILABLE', http: { status: 503, headers: { 'retry-after': '1' } } },
    });
  }
  if (isUnstorableText(original)) {
    return new GraphQLError(NUL_MESSAGE, { ...at, extensions: { code: 'BAD_USER_INPUT' } });
  }
  log('unexpected error in a resolver', original);
  return new GraphQLError('Unexpected error.', { ...at, extensions: { code: 'INTERNAL_SERVER_ERROR' } });
}

export const NUL_MESSAGE = 'text may not contain the NUL character (U+0000): PostgreSQL cannot store it';
