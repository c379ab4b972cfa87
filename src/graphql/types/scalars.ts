import { GraphQLError, Kind, type ValueNode } from 'graphql';
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
  parseValue: (value) => value,
  parseLiteral: (node, variables) => literalToJson(node, variables),
});

builder.scalarType('DateTime', {
  description: 'An instant as an ISO-8601 string, e.g. 2026-11-28T12:00:00.000Z.',
  serialize: (value) => (value instanceof Date ? value.toISOString() : new Date(value as string).toISOString()),
  parseValue: (value) => {
    if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T/.test(value) || Number.isNaN(Date.parse(value))) {
      throw new GraphQLError('DateTime must be an ISO-8601 string such as 2026-11-28T12:00:00Z', {
        extensions: { code: 'BAD_USER_INPUT' },
      });
    }
    return new Date(value);
  },
  parseLiteral: (node) => {
    if (node.kind !== Kind.STRING || !/^\d{4}-\d{2}-\d{2}T/.test(node.value) || Number.isNaN(Date.parse(node.value))) {
      throw new GraphQLError('DateTime must be an ISO-8601 string such as 2026-11-28T12:00:00Z', {
        extensions: { code: 'BAD_USER_INPUT' },
      });
    }
    return new Date(node.value);
  },
});
