import fc from 'fast-check';
import {
  type GraphQLArgument,
  GraphQLEnumType,
  type GraphQLField,
  GraphQLInputObjectType,
  type GraphQLInputType,
  GraphQLList,
  GraphQLNonNull,
  type GraphQLObjectType,
  GraphQLScalarType,
  getNamedType,
  isCompositeType,
} from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { schema } from '../../src/graphql/schema.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

/**
 * Generated odd values at every argument of every query and mutation of the
 * schema (walked from the schema itself, so a new operation is covered the
 * day it is added), as an operator and as a portal: whatever the answer, it
 * is never INTERNAL_SERVER_ERROR, and never a 5xx but 503. Bounded in runs
 * and in time, so it stays quick on a busy machine.
 */
describe('odd values at every input of the schema', () => {
  let t: TestDispatch;
  let portalToken: string;
  const ids: string[] = [];
  /** Real values by input name, so generated requests get past lookups to the code that reads the odd values. */
  const known: Record<string, string> = {};
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    const appId = (await t.client.request(CreateAppDocument, { input: { name: 'Fuzz' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'fuzz.event' } });
    const endpoint = await t.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'customer_1', url: 'https://example.com/hooks' },
    });
    const sent = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_1', eventType: 'fuzz.event', data: { a: 1 }, messageId: 'm1' },
    });
    const portal = await t.client.request(CreatePortalSessionDocument, { input: { appId, recipientId: 'customer_1' } });
    portalToken = portal.createPortalSession.token;
    ids.push(appId, endpoint.createEndpoint.id, sent.sendMessage.message.id, 'm1', 'customer_1', 'fuzz.event');
    Object.assign(known, {
      appId,
      endpointId: endpoint.createEndpoint.id,
      eventType: 'fuzz.event',
      recipientId: 'customer_1',
      messageId: 'm1',
    });
  });
  afterAll(async () => t.stop());

  const knownNames = { appId: 1, endpointId: 1, eventType: 1, recipientId: 1 };
  const oddStrings = [
    '',
    ' ',
    '\ud800',
    'a\udc00b',
    'a\u0001b',
    '\u007f',
    '\r\n',
    '😀',
    'é',
    'x'.repeat(5_000),
    '../../etc/passwd',
    '\'; DROP TABLE "App"; --',
    '%00',
    '{}',
    'app_',
    'msg_00000000000000000000000000',
    'ep_zzzzzzzzzzzzzzzzzzzzzzzzzz',
    'http://127.0.0.1/',
    'https://example.com/ok',
    'javascript:alert(1)',
    '0000-01-01T00:00:00Z',
    '9999-12-31T23:59:59.999Z',
    '-000001-01-01T00:00:00Z',
    '2026-02-30T25:61:61Z',
    'NaN',
    '1e308',
  ];
  const oddString = fc.oneof(
    fc.constantFrom(...oddStrings),
    fc.string({ unit: 'binary', maxLength: 40 }),
    // Real ids of this run (read when generating: they exist only once beforeAll ran).
    fc.nat().map((i) => ids[i % ids.length] ?? 'customer_1'),
  );
  const oddInt = fc.oneof(
    fc.constantFrom(0, -1, 1, 100, 101, 2_147_483_647, -2_147_483_648, 604_800, 604_801),
    fc.integer({ min: -2_147_483_648, max: 2_147_483_647 }),
  );
  const deepJson = (levels: number) => {
    let value: unknown = 'leaf';
    for (let i = 0; i < levels; i++) value = { a: [value] };
    return value;
  };
  const oddJson = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom(deepJson(100), '\ud800', { k: ['\udfff'] }),
    fc.constantFrom(deepJson(40), deepJson(100), '\ud800', { k: '\udfff' }, { ['\ud800']: 1 }, [null], 1e308, -0),
    fc.dictionary(oddString, oddString, { maxKeys: 4 }),
    fc.array(oddString, { maxLength: 4 }),
  );
  const oddDateTime = fc.oneof(
    fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    fc.constantFrom('0000-01-01T00:00:00Z', '2026-11-28T12:00:00Z', '1970-01-01T00:00:00+14:00', 'yesterday'),
    oddString,
  );

  function arbitraryFor(type: GraphQLInputType, depth: number, name = ''): fc.Arbitrary<unknown> {
    if (name in knownNames && getNamedType(type) instanceof GraphQLScalarType) {
      // Mostly the real value (read when generating: it exists once beforeAll ran), sometimes an odd one.
      return fc.oneof(
        { arbitrary: fc.constant(name).map((n) => known[n]), weight: 9 },
        { arbitrary: nonNull(type, depth), weight: 1 },
      );
    }
    if (type instanceof GraphQLNonNull) return arbitraryFor(type.ofType, depth);
    const some = nonNull(type, depth);
    return fc.oneof({ arbitrary: some, weight: 4 }, { arbitrary: fc.constant(null), weight: 1 });
  }
  function nonNull(type: GraphQLInputType, depth: number): fc.Arbitrary<unknown> {
    if (type instanceof GraphQLNonNull) return nonNull(type.ofType, depth);
    if (type instanceof GraphQLList) return fc.array(arbitraryFor(type.ofType, depth + 1), { maxLength: 3 });
    if (type instanceof GraphQLEnumType) return fc.constantFrom(...type.getValues().map((v) => v.name));
    if (type instanceof GraphQLInputObjectType) {
      const fields = Object.values(type.getFields());
      if (depth > 3) return fc.constant({});
      return fc.record(Object.fromEntries(fields.map((f) => [f.name, arbitraryFor(f.type, depth + 1, f.name)])), {
        requiredKeys: fields.filter((f) => f.type instanceof GraphQLNonNull).map((f) => f.name),
      });
    }
    if (type instanceof GraphQLScalarType) {
      switch (type.name) {
        case 'Int':
          return oddInt;
        case 'Float':
          return fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), oddInt);
        case 'Boolean':
          return fc.boolean();
        case 'JSON':
          return oddJson;
        case 'DateTime':
          return oddDateTime;
        default:
          return oddString;
      }
    }
    throw new Error(`no values for ${String(type)}`);
  }

  /** One operation per root field: every argument a variable, the result's __typename selected. */
  function operationsOf(kind: 'query' | 'mutation', root: GraphQLObjectType | null | undefined) {
    return Object.values(root?.getFields() ?? {}).map((field: GraphQLField<unknown, unknown>) => {
      const args = field.args as readonly GraphQLArgument[];
      const declared = args.map((a, i) => `$a${i}: ${String(a.type)}`).join(', ');
      const passed = args.map((a, i) => `${a.name}: $a${i}`).join(', ');
      const selection = isCompositeType(getNamedType(field.type)) ? ' { __typename }' : '';
      const query = `${kind}${declared ? ` (${declared})` : ''} { ${field.name}${passed ? `(${passed})` : ''}${selection} }`;
      const variables = fc
        .tuple(...args.map((a) => arbitraryFor(a.type, 0)))
        .map((values) => Object.fromEntries(values.map((v, i) => [`a${i}`, v]).filter(([, v]) => v !== undefined)));
      return { name: field.name, query, variables };
    });
  }

  it('never answers INTERNAL_SERVER_ERROR or a 5xx other than 503', async () => {
    const operations = [
      ...operationsOf('query', schema.getQueryType()),
      ...operationsOf('mutation', schema.getMutationType()),
    ];
    expect(operations.length).toBeGreaterThan(20);
    let runs = 0;
    // Each operation in turn, so every one gets its share: a few requests each, at most 2 s each on a busy machine.
    for (const operation of operations) {
      await fc.assert(
        fc.asyncProperty(operation.variables, fc.nat(3), async (variables, who) => {
          runs++;
          const response = await fetch(`${t.url}/graphql`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${who === 0 ? portalToken : t.apiKey}`,
              'content-type': 'application/json',
              accept: 'application/json',
            },
            body: JSON.stringify({ query: operation.query, variables }),
          });
          const body = (await response.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
          const codes = (body.errors ?? []).map((e) => e.extensions?.code);
          const seen = `${operation.name} ${response.status} ${JSON.stringify(body.errors ?? []).slice(0, 300)}`;
          expect(codes, seen).not.toContain('INTERNAL_SERVER_ERROR');
          expect(response.status >= 500 && response.status !== 503, seen).toBe(false);
        }),
        { numRuns: 20, interruptAfterTimeLimit: 2_000, markInterruptAsFailure: false },
      );
    }
    console.info(`schema-fuzz: ${runs} requests over ${operations.length} operations`);
    expect(runs).toBeGreaterThan(30);
  }, 60_000);
});
