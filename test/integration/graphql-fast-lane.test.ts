import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { regularMediaType } from '../../src/http/fast-lane.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

/**
 * The fast lane answers plain JSON POSTs without yoga's Fetch API layer; it
 * must answer exactly as yoga does. A request with an Origin header always
 * goes through yoga, so each case is sent both ways and the answers compared
 * (status, content type, headers that matter, body), and the lane's counter
 * tells which requests it answered.
 */
describe('GraphQL fast lane', () => {
  let t: TestDispatch;

  beforeAll(async () => {
    // Requests from this origin take yoga's own path (the fast lane leaves browsers to it).
    t = await startTestDispatch({ DISPATCH_CORS_ORIGINS: 'http://elsewhere.test' });
  });
  afterAll(async () => {
    await t?.stop();
  });

  interface Answer {
    status: number;
    contentType: string | null;
    retryAfter: string | null;
    body: unknown;
  }

  async function post(body: string, headers: Record<string, string>): Promise<Answer> {
    const response = await fetch(`${t.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // compared as text
    }
    return {
      status: response.status,
      contentType: response.headers.get('content-type'),
      retryAfter: response.headers.get('retry-after'),
      body: parsed,
    };
  }

  /** Sends a request through the fast lane's door and through yoga's; returns both answers and whether the lane took it. */
  async function bothWays(
    body: string,
    headers: Record<string, string>,
  ): Promise<{ fast: Answer; yoga: Answer; laneAnswered: boolean }> {
    const before = t.dispatch.http.fastLaneAnswered();
    const fast = await post(body, headers);
    const laneAnswered = t.dispatch.http.fastLaneAnswered() === before + 1;
    const yoga = await post(body, { ...headers, origin: 'http://elsewhere.test' });
    return { fast, yoga, laneAnswered };
  }

  const auth = () => ({ authorization: `Bearer ${t.apiKey}` });
  const ACCEPTS: (string | undefined)[] = [
    undefined,
    '*/*',
    'application/json',
    'application/graphql-response+json',
    'application/graphql-response+json, application/json',
    'application/json, application/graphql-response+json',
  ];
  const acceptHeader = (accept: string | undefined): Record<string, string> => (accept === undefined ? {} : { accept });

  it('answers a query as yoga does, for every Accept a client sends', async () => {
    for (const accept of ACCEPTS) {
      const { fast, yoga, laneAnswered } = await bothWays(JSON.stringify({ query: '{ viewer { kind } }' }), {
        ...auth(),
        ...acceptHeader(accept),
      });
      expect(laneAnswered, `accept ${accept}`).toBe(true);
      expect(fast, `accept ${accept}`).toEqual(yoga);
      expect(fast.body).toEqual({ data: { viewer: { kind: 'OPERATOR' } } });
    }
  });

  it('answers resolver errors and bad variables as yoga does, status codes included', async () => {
    const cases = [
      // A mutation refused by its resolver: nothing is stored, so it can run twice.
      {
        query: 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated } }',
        variables: {
          input: { appId: 'app_00000000000000000000000000', recipientId: 'r1', eventType: 'x.y', data: {} },
        },
      },
      // Variables that do not coerce: graphql-js refuses before any resolver.
      { query: 'query($id: ID!) { app(id: $id) { name } }', variables: { id: { not: 'an id' } } },
      { query: 'query($id: ID!) { app(id: $id) { name } }', variables: {} },
      // A missing object is null, not an error.
      {
        query: 'query($id: ID!) { app(id: $id) { name } }',
        variables: { id: 'app_00000000000000000000000000' },
        operationName: null,
      },
    ];
    for (const body of cases) {
      for (const accept of ACCEPTS) {
        const { fast, yoga, laneAnswered } = await bothWays(JSON.stringify(body), {
          ...auth(),
          ...acceptHeader(accept),
        });
        expect(laneAnswered, `${body.query} / ${accept}`).toBe(true);
        expect(fast, `${body.query} / ${accept}`).toEqual(yoga);
      }
    }
    const refused = await post(JSON.stringify(cases[0]), auth());
    expect((refused.body as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe(
      'NOT_FOUND',
    );
  });

  it('leaves to yoga what yoga refuses before running anything, and its answers stay the same', async () => {
    const cases: { body: string; headers: Record<string, string> }[] = [
      { body: JSON.stringify({ query: '{ viewer { kind' }), headers: auth() },
      { body: JSON.stringify({ query: '{ nope }' }), headers: auth() },
      {
        body: JSON.stringify({ query: '{ nope }' }),
        headers: { ...auth(), accept: 'application/graphql-response+json' },
      },
      { body: JSON.stringify({ query: '{ viewer { kind } }' }), headers: {} },
      { body: JSON.stringify({ query: '{ viewer { kind } }' }), headers: { authorization: 'Bearer dk_wrong' } },
      {
        body: JSON.stringify({ query: '{ viewer { kind } }' }),
        headers: { authorization: 'Bearer dk_wrong', accept: 'application/graphql-response+json' },
      },
      { body: JSON.stringify([{ query: '{ viewer { kind } }' }]), headers: auth() },
      { body: JSON.stringify({ query: '{ viewer { kind } }', extensions: { persistedQuery: {} } }), headers: auth() },
      { body: JSON.stringify({ query: '{ viewer { kind } }', extra: 1 }), headers: auth() },
      { body: JSON.stringify({ query: 42 }), headers: auth() },
      { body: '{"query": ', headers: auth() },
      { body: JSON.stringify({ query: 'query A { viewer { kind } } query B { viewer { kind } }' }), headers: auth() },
      { body: JSON.stringify({ query: 'subscription { attemptUpdated(appId: "app_x") { id } }' }), headers: auth() },
      { body: JSON.stringify({ query: '{ viewer { kind } }' }), headers: { ...auth(), accept: 'text/event-stream' } },
    ];
    for (const { body, headers } of cases) {
      const { fast, yoga, laneAnswered } = await bothWays(body, headers);
      expect(laneAnswered, body).toBe(false);
      expect(fast, body).toEqual(yoga);
    }
    const unauthenticated = await post(JSON.stringify({ query: '{ viewer { kind } }' }), {});
    expect(unauthenticated.status).toBe(401);
  });

  it('a document refused once is refused the same way when sent again (yoga caches parse errors)', async () => {
    const deep = `{ ${'viewer { app { name } } '.repeat(1)}${Array.from({ length: 21 }, (_, i) => `a${i}: viewer { kind }`).join(' ')} }`;
    for (const query of [
      '{ apps { ',
      deep,
      `{ node(id: "x") { ${'... on App { messages { nodes { app { '.repeat(5)}id${' } } } }'.repeat(5)} } }`,
    ]) {
      const answers: Answer[] = [];
      for (let i = 0; i < 3; i++) {
        const { fast, yoga, laneAnswered } = await bothWays(JSON.stringify({ query }), auth());
        expect(laneAnswered, query).toBe(false);
        expect(fast, query).toEqual(yoga);
        answers.push(fast);
      }
      expect(answers[1]).toEqual(answers[0]);
      expect(answers[2]).toEqual(answers[0]);
      const codes = (answers[0]!.body as { errors: { extensions: { code: string } }[] }).errors.map(
        (e) => e.extensions.code,
      );
      expect(codes, query).toEqual([query === '{ apps { ' ? 'GRAPHQL_PARSE_FAILED' : 'BAD_USER_INPUT']);
    }
  });

  it('picks the media type by the same rule as yoga', () => {
    expect(regularMediaType(undefined)).toBe('application/json');
    expect(regularMediaType('*/*')).toBe('application/json');
    expect(regularMediaType('application/*')).toBe('application/json');
    expect(regularMediaType('application/graphql-response+json, application/json')).toBe(
      'application/graphql-response+json',
    );
    expect(regularMediaType('application/json, application/graphql-response+json')).toBe('application/json');
    expect(regularMediaType('application/json; charset=latin1')).toBeUndefined();
    expect(regularMediaType('text/event-stream')).toBeUndefined();
    expect(regularMediaType('text/html')).toBeUndefined();
  });
});
