import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument, CreateEventTypeDocument } from '../../packages/client/src/index.ts';
import { MAX_JSON_DEPTH } from '../../src/domain/json-value.ts';
import { MAX_DOCUMENT_NESTING } from '../../src/graphql/document-nesting.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { codesOf, expectError } from '../support/graphql.ts';

const SEND = `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { message { id data } } }`;
const CREATE_ENDPOINT = `mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id } }`;

/** Values that answered INTERNAL_SERVER_ERROR: each is a clear BAD_USER_INPUT, or stored as sent. */
describe('odd values get a clear answer, never INTERNAL_SERVER_ERROR', () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Odd values' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'odd.value' } });
  });
  afterAll(async () => t.stop());

  const nested = (levels: number, leaf: unknown = 1): unknown => {
    let value = leaf;
    for (let i = 0; i < levels; i++) value = i % 2 ? [value] : { a: value };
    return value;
  };
  /** JSON text nested `levels` deep (JSON.stringify itself overflows the stack at 10,000). */
  const nestedText = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
  /** Posts variables given as JSON text; returns the error codes and messages. */
  async function postVariables(query: string, variablesText: string) {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.apiKey}`, 'content-type': 'application/json', accept: 'application/json' },
      body: `{"query":${JSON.stringify(query)},"variables":${variablesText}}`,
    });
    const body = (await response.json()) as { errors?: { message: string; extensions?: { code?: string } }[] };
    return { status: response.status, codes: (body.errors ?? []).map((e) => e.extensions?.code), body };
  }
  const send = (data: unknown) => ({ input: { appId, recipientId: 'r', eventType: 'odd.value', data } });

  it(`message data nested 10,000 deep (or over ${MAX_JSON_DEPTH}) is BAD_USER_INPUT; ${MAX_JSON_DEPTH} levels are stored`, async () => {
    for (const levels of [10_000, MAX_JSON_DEPTH + 1]) {
      const refused = await postVariables(
        SEND,
        `{"input":{"appId":"${appId}","recipientId":"r","eventType":"odd.value","data":${nestedText(levels)}}}`,
      );
      expect(refused.codes, JSON.stringify(refused.body).slice(0, 500)).toEqual(['BAD_USER_INPUT']);
      expect(refused.body.errors![0]!.message).toMatch(/nested deeper than/);
    }
    const data = nested(MAX_JSON_DEPTH);
    const sent = await t.client.raw<{ sendMessage: { message: { data: unknown } } }>(SEND, send(data));
    expect(sent.errors).toBeUndefined();
    expect(sent.data!.sendMessage.message.data).toEqual(data);
  });

  it('endpoint headers and event type schemas nested too deep are BAD_USER_INPUT too', async () => {
    const endpoint = await postVariables(
      CREATE_ENDPOINT,
      `{"input":{"appId":"${appId}","recipientId":"r","url":"https://example.com/h","headers":${nestedText(10_000)}}}`,
    );
    expect(endpoint.codes).toEqual(['BAD_USER_INPUT']);
    const eventType = await postVariables(
      `mutation ($input: CreateEventTypeInput!) { createEventType(input: $input) { name } }`,
      `{"input":{"appId":"${appId}","name":"deep.schema","schema":${nestedText(10_000)}}}`,
    );
    expect(eventType.codes).toEqual(['BAD_USER_INPUT']);
  });

  it('a query nested 10,000 deep, in selections or in a JSON literal, is BAD_USER_INPUT before it is parsed', async () => {
    const selections = `{ ${'viewer { '.repeat(10_000)}kind${' }'.repeat(10_000)} }`;
    const literal = `mutation { sendMessage(input: {appId: "${appId}", recipientId: "r", eventType: "odd.value", data: ${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}}) { message { id } } }`;
    for (const query of [selections, literal]) {
      const refused = await expectError(t.client, 'BAD_USER_INPUT', query);
      expect(refused.status).toBe(400);
      expect(refused.errors![0]!.message).toMatch(new RegExp(`nested deeper than ${MAX_DOCUMENT_NESTING}`));
    }
    // Brackets inside strings and comments do not count.
    const quoted = `query { # ${'{'.repeat(200)}
      viewer { kind } __typename } query B { __typename(a: "${'['.repeat(200)}") }`;
    expect(codesOf(await t.client.raw(quoted))).not.toContain('BAD_USER_INPUT');
  });

  it('a lone surrogate ("\\ud800") in data, a data key or a header value is BAD_USER_INPUT', async () => {
    for (const data of ['\ud800', { text: 'a\udc00b' }, { ['k\ud800']: 1 }, ['ok', ['\udbff']]]) {
      const refused = await expectError(t.client, 'BAD_USER_INPUT', SEND, send(data));
      expect(refused.errors![0]!.message).toMatch(/surrogate/);
    }
    await expectError(t.client, 'BAD_USER_INPUT', CREATE_ENDPOINT, {
      input: { appId, recipientId: 'r', url: 'https://example.com/h', headers: { 'x-a': '\ud800' } },
    });
    // A surrogate pair is an ordinary character.
    const sent = await t.client.raw<{ sendMessage: { message: { data: unknown } } }>(SEND, send({ emoji: '😀' }));
    expect(sent.data!.sendMessage.message.data).toEqual({ emoji: '😀' });
  });

  it('a DateTime outside years 0001 to 9999 is BAD_USER_INPUT, as a variable and as a literal', async () => {
    for (const since of ['0000-01-01T00:00:00Z', '0000-12-31T23:59:59.999Z', '10000-01-01T00:00:00Z']) {
      await expectError(
        t.client,
        'BAD_USER_INPUT',
        `query ($app: ID!, $since: DateTime) { app(id: $app) { messages(since: $since) { nodes { id } } } }`,
        { app: appId, since },
      );
      await expectError(
        t.client,
        'BAD_USER_INPUT',
        `query ($app: ID!) { app(id: $app) { messages(since: "${since}") { nodes { id } } } }`,
        { app: appId },
      );
    }
    const ok = await t.client.raw(
      `query ($app: ID!) { app(id: $app) { messages(since: "0001-01-01T00:00:00Z", until: "9999-12-31T23:59:59Z") { nodes { id } } } }`,
      { app: appId },
    );
    expect(ok.errors).toBeUndefined();
  });
});
