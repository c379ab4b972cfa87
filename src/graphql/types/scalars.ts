import { GraphQLError, Kind, type ValueNode } from 'graphql';
import { checkJsonValue } from '../../domain/json-value.ts';
import { builder } from '../builder.ts';

function literalToJson(node: ValueNode, variables: Record<string, unknown> | null | undefined): unknown {
  switch (node.kind) {
    case Kind.STRING:
    case Kind.BOOLEAN:
      return node.value;
    case Kind.INT:
    case Kind.FLOAT:
      return Number(node.value);
    case Kind.NULL:
      return null;
    case Kind.LIST:
      // A variable not given is null in a list and absent from an object, as in GraphQL's own input values.
      return node.values.map((v) => literalToJson(v, variables) ?? null);
    case Kind.OBJECT: {
      const object: Record<string, unknown> = {};
      for (const field of node.fields) {
        const value = literalToJson(field.value, variables);
        if (value !== undefined) object[field.name.value] = value;
      }
      return object;
    }
    case Kind.VARIABLE:
      return variables?.[node.name.value];
    default:
      throw new GraphQLError('JSON cannot represent this value', { extensions: { code: 'BAD_USER_INPUT' } });
  }
}

builder.scalarType('JSON', {
  description: 'Any JSON value.',
  serialize: (value) => value,
  parseValue: (value) => {
    checkJsonValue(value);
    return value;
  },
  parseLiteral: (node, variables) => {
    const value = literalToJson(node, variables);
    checkJsonValue(value);
    return value;
  },
});

/**
 * An ISO-8601 instant in years 0001 to 9999: the years both JavaScript and
 * the database read back as they were written (year 0 answered
 * INTERNAL_SERVER_ERROR).
 */
function parseDateTime(text: unknown): Date {
  const date = typeof text === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(text) ? new Date(text) : undefined;
  const year = date?.getUTCFullYear() ?? Number.NaN;
  if (!date || !(year >= 1 && year <= 9999)) {
    throw new GraphQLError('DateTime must be an ISO-8601 string in years 0001 to 9999, such as 2026-11-28T12:00:00Z', {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  }
  return date;
}

builder.scalarType('DateTime', {
  description: 'An instant as an ISO-8601 string, e.g. 2026-11-28T12:00:00.000Z.',
  serialize: (value) => (value instanceof Date ? value.toISOString() : new Date(value as string).toISOString()),
  parseValue: (value) => parseDateTime(value),
  parseLiteral: (node) => parseDateTime(node.kind === Kind.STRING ? node.value : undefined),
});

/** A live-feed cursor: checked when used (src/live/cursor.ts), so a wrong one answers BAD_USER_INPUT with the reason. */
const parseCursor = (value: unknown): string => {
  if (typeof value !== 'string')
    throw new GraphQLError('Cursor must be a string: the cursor field of a live-feed event', {
      extensions: { code: 'BAD_USER_INPUT' },
    });
  return value;
};

builder.scalarType('Cursor', {
  description:
    'An opaque position in the live feed: each event of attemptUpdated and messageCreated carries one (its cursor field); pass the last one received as `after` to resume there. Kept as long as the retention setting keeps messages.',
  serialize: (value) => String(value),
  parseValue: parseCursor,
  parseLiteral: (node) => parseCursor(node.kind === Kind.STRING ? node.value : undefined),
});
