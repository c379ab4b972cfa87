import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument, CreateEventTypeDocument } from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

/**
 * A GraphQL variable written inside a JSON literal (`data: {invoiceId: $v}`)
 * is that variable's value, on every path a request can take: the fast lane
 * (a plain JSON POST) and yoga's own handling (here, a body with
 * `extensions`, which the fast lane leaves to yoga). graphql-jit compiled such
 * literals without the variables and dropped the value in silence.
 */
describe('variables inside JSON literals', () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Json variables' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.paid' } });
  });
  afterAll(async () => t.stop());

  const paths = {
    'fast lane': (query: string, variables: Record<string, unknown>) => ({ query, variables }),
    yoga: (query: string, variables: Record<string, unknown>) => ({ query, variables, extensions: {} }),
  };

  async function post(body: object) {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    return (await response.json()) as {
      data?: Record<string, any> | null;
      errors?: { extensions?: { code?: string } }[];
    };
  }

  let n = 0;
  for (const [path, body] of Object.entries(paths)) {
    describe(path, () => {
      it('sendMessage data: a variable in an object, in a list and nested keeps its value', async () => {
        const query = `mutation ($app: ID!, $v: String, $l: JSON, $n: JSON, $j: JSON) {
          sendMessage(input: {appId: $app, recipientId: "r", eventType: "invoice.paid",
            data: {invoiceId: $v, amount: 5, list: [$l, 1, [$n]], nested: {deep: {value: $j}}}}) { message { data } } }`;
        const variables = { app: appId, v: 'inv_1', l: 'inv_1', n: 7, j: { any: ['json', null] } };
        const result = await post(body(query, variables));
        expect(result.errors).toBeUndefined();
        const expected = {
          invoiceId: 'inv_1',
          amount: 5,
          list: ['inv_1', 1, [7]],
          nested: { deep: { value: { any: ['json', null] } } },
        };
        expect(result.data!.sendMessage.message.data).toEqual(expected);
        const stored = await t.dispatch.db.prisma.message.findMany({
          where: { appId },
          orderBy: { id: 'desc' },
          take: 1,
        });
        expect(stored[0]!.data).toEqual(expected);
      });

      it('sendMessage data: a list literal of a variable is not [null]', async () => {
        // A list literal's items take the argument's type (JSON), so the variable is declared JSON.
        const query = `mutation ($app: ID!, $v: JSON!) {
          sendMessage(input: {appId: $app, recipientId: "r", eventType: "invoice.paid", data: [$v]}) { message { data } } }`;
        const result = await post(body(query, { app: appId, v: 'x' }));
        expect(result.errors).toBeUndefined();
        expect(result.data!.sendMessage.message.data).toEqual(['x']);
      });

      it('createEndpoint and updateEndpoint headers keep the value of a variable', async () => {
        const create = `mutation ($app: ID!, $v: String!) {
          createEndpoint(input: {appId: $app, recipientId: "r", url: "https://example.com/${++n}", headers: {authorization: $v}}) { id headers } }`;
        const created = await post(body(create, { app: appId, v: 'Bearer secret' }));
        expect(created.errors).toBeUndefined();
        expect(created.data!.createEndpoint.headers).toEqual({ authorization: 'Bearer secret' });
        const id = created.data!.createEndpoint.id as string;
        const stored = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id } });
        expect(stored.headers).toEqual({ authorization: 'Bearer secret' });

        const update = `mutation ($id: ID!, $v: String!) {
          updateEndpoint(input: {id: $id, headers: {x_token: $v}}) { headers } }`;
        const updated = await post(body(update, { id, v: 'tok' }));
        expect(updated.errors).toBeUndefined();
        expect(updated.data!.updateEndpoint.headers).toEqual({ x_token: 'tok' });
      });

      it('createEventType schema keeps the value of a variable', async () => {
        const query = `mutation ($app: ID!, $name: String!, $t: String!) {
          createEventType(input: {appId: $app, name: $name, schema: {type: "object", properties: {id: {type: $t}}, required: ["id"]}}) { schema } }`;
        const result = await post(body(query, { app: appId, name: `schema.v${++n}`, t: 'string' }));
        expect(result.errors).toBeUndefined();
        expect(result.data!.createEventType.schema).toEqual({
          type: 'object',
          properties: { id: { type: 'string' } },
          required: ['id'],
        });
      });

      it('a variable declared but not given is left out of an object and null in a list, as GraphQL does for input values', async () => {
        const query = `mutation ($app: ID!, $v: String, $w: JSON) {
          sendMessage(input: {appId: $app, recipientId: "r", eventType: "invoice.paid", data: {a: $v, b: [$w], c: 1}}) { message { data } } }`;
        const result = await post(body(query, { app: appId }));
        expect(result.errors).toBeUndefined();
        expect(result.data!.sendMessage.message.data).toEqual({ b: [null], c: 1 });
      });
    });
  }
});
