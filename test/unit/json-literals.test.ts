import { parse } from 'graphql';
import { describe, expect, it } from 'vitest';
import { hasVariableInScalarLiteral } from '../../src/graphql/json-literals.ts';
import { schema } from '../../src/graphql/schema.ts';

const check = (query: string) => hasVariableInScalarLiteral(schema, parse(query));

describe('variables inside scalar literals', () => {
  it('finds a variable in a JSON object or list literal, however deep', () => {
    expect(
      check(
        'mutation ($v: String) { sendMessage(input: {appId: "a", recipientId: "r", eventType: "e", data: {a: $v}}) { deduplicated } }',
      ),
    ).toBe(true);
    expect(
      check(
        'mutation ($v: JSON) { sendMessage(input: {appId: "a", recipientId: "r", eventType: "e", data: [1, {b: [$v]}]}) { deduplicated } }',
      ),
    ).toBe(true);
    expect(
      check(
        'mutation ($v: String) { createEndpoint(input: {appId: "a", recipientId: "r", url: "u", headers: {x: $v}}) { id } }',
      ),
    ).toBe(true);
  });

  it('leaves alone variables that graphql-jit reads itself: a whole argument, an input field, a list of a list type', () => {
    expect(
      check(
        'mutation ($d: JSON!) { sendMessage(input: {appId: "a", recipientId: "r", eventType: "e", data: $d}) { deduplicated } }',
      ),
    ).toBe(false);
    expect(
      check(
        'mutation ($e: String!) { createEndpoint(input: {appId: "a", recipientId: "r", url: "u", eventTypes: [$e], headers: {x: "y"}}) { id } }',
      ),
    ).toBe(false);
    expect(check('query { viewer { kind } }')).toBe(false);
  });
});
