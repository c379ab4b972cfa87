import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument, CreateEventTypeDocument, MessageDocument } from '../../packages/client/src/index.ts';
import { MAX_QUERY_NODES } from '../../src/graphql/cost.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { codesOf, expectError } from '../support/graphql.ts';

describe('limits and malformed requests', () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch();
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Limits' } })).createApp.id;
  });
  afterAll(async () => t.stop());

  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${t.url}/graphql`, {
      method: 'POST',
      body,
      headers: {
        authorization: `Bearer ${t.apiKey}`,
        'content-type': 'application/json',
        accept: 'application/json',
        ...headers,
      },
    });

  describe('text PostgreSQL cannot store', () => {
    const count = async () =>
      Number(
        (await t.dispatch.db.pool.query('SELECT (SELECT count(*) FROM "App") + (SELECT count(*) FROM "Message") AS n'))
          .rows[0].n,
      );

    it('a NUL character in any string of a request (variables, data, a name) is BAD_USER_INPUT and writes nothing', async () => {
      await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'nul.test' } });
      const before = await count();
      for (const [query, variables] of [
        [`mutation ($input: CreateAppInput!) { createApp(input: $input) { id } }`, { input: { name: 'a\u0000b' } }],
        [
          `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { message { id } } }`,
          { input: { appId, recipientId: 'r', eventType: 'nul.test', data: { s: '\u0000' } } },
        ],
        [
          `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { message { id } } }`,
          { input: { appId, recipientId: 'r', eventType: 'nul.test', data: { 'k\u0000': 1 } } },
        ],
        // In the query text itself, as a GraphQL string escape.
        [`mutation { createApp(input: { name: "a\\u0000b" }) { id } }`, undefined],
      ] as const) {
        const refused = await expectError(t.client, 'BAD_USER_INPUT', query, variables);
        expect(refused.errors![0]!.message).toMatch(/NUL/);
      }
      expect(await count()).toBe(before);
    });

    it('a backslash followed by "u0000" is ordinary text', async () => {
      const data = { s: 'C:\\u0000\\path', t: '\\\\u0000' };
      const sent = await t.client.raw<{ sendMessage: { message: { data: unknown } } }>(
        `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { message { data } } }`,
        { input: { appId, recipientId: 'r', eventType: 'nul.test', data } },
      );
      expect(sent.errors).toBeUndefined();
      expect(sent.data!.sendMessage.message.data).toEqual(data);
    });
  });

  describe('query shape', () => {
    it('a query nested deeper than 12 levels is BAD_USER_INPUT, fragments included', async () => {
      // app > messages > nodes > app > messages > nodes > … : each round trip adds three levels.
      const nest = (levels: number): string =>
        levels === 0 ? 'id' : `app { messages { nodes { ${nest(levels - 1)} } } }`;
      const deep = await expectError(
        t.client,
        'BAD_USER_INPUT',
        `query ($id: ID!) { node(id: $id) { ... on Message { ${nest(4)} } } }`,
        { id: 'msg_x' },
      );
      expect(deep.errors![0]!.message).toMatch(/depth/i);
      await expectError(
        t.client,
        'BAD_USER_INPUT',
        `query ($id: ID!) { node(id: $id) { ...A } } fragment A on Message { app { messages { nodes { ...B } } } }
         fragment B on Message { app { messages { nodes { ...C } } } } fragment C on Message { app { messages { nodes { ...D } } } }
         fragment D on Message { app { messages { nodes { ...E } } } } fragment E on Message { app { messages { nodes { id } } } }`,
        { id: 'msg_x' },
      );
      // Three round trips (depth 10) are fine.
      const ok = await t.client.raw(`query ($id: ID!) { node(id: $id) { ... on Message { ${nest(3)} } } }`, {
        id: 'msg_x',
      });
      expect(ok.errors).toBeUndefined();
    });

    it('more than 20 aliases is BAD_USER_INPUT', async () => {
      const aliases = Array.from({ length: 21 }, (_, i) => `a${i}: viewer { kind }`).join(' ');
      const refused = await expectError(t.client, 'BAD_USER_INPUT', `{ ${aliases} }`);
      expect(refused.errors![0]!.message).toMatch(/alias/i);
      const ok = await t.client.raw(`{ ${Array.from({ length: 20 }, (_, i) => `a${i}: viewer { kind }`).join(' ')} }`);
      expect(ok.errors).toBeUndefined();
    });

    const threeLevels = (first: string) =>
      `query ${first === '$first' ? '($first: Int)' : ''} { apps(first: ${first}) { nodes { messages(first: ${first}) { nodes { deliveries(first: ${first}) { nodes { id } } } } } } }`;

    it('an absurdly costly query (three nested pages of 100) is BAD_USER_INPUT before any resolver runs', async () => {
      const refused = await expectError(t.client, 'BAD_USER_INPUT', threeLevels('100'));
      expect(refused.errors![0]!.extensions).toMatchObject({ limit: MAX_QUERY_NODES });
      expect(refused.errors![0]!.extensions!.cost as number).toBeGreaterThan(1_000_000);
    });

    it('page sizes given in variables count the same as literals', async () => {
      await expectError(t.client, 'BAD_USER_INPUT', threeLevels('$first'), { first: 100 });
      // Small pages pass: 5 × 5 × 5.
      const ok = await t.client.raw(threeLevels('$first'), { first: 5 });
      expect(ok.errors).toBeUndefined();
    });

    it('connections without first count at the default page size, and aliases add up', async () => {
      // 20 × 20 × 20 = 8000 deliveries per alias: three aliases are over the limit.
      const one = (alias: string) => `${alias}: apps { nodes { messages { nodes { deliveries { nodes { id } } } } } }`;
      expect((await t.client.raw(`{ ${one('a')} }`)).errors).toBeUndefined();
      await expectError(t.client, 'BAD_USER_INPUT', `{ ${one('a')} ${one('b')} ${one('c')} ${one('d')} }`);
    });

    it("the typed client's own operations stay under the limit (two nested pages of 100)", async () => {
      const { message } = await t.client.request(MessageDocument, { appId, id: 'msg_missing' });
      expect(message).toBeNull();
    });

    it('first over 100 or negative is BAD_USER_INPUT on every connection', async () => {
      await expectError(t.client, 'BAD_USER_INPUT', `{ apps(first: 101) { nodes { id } } }`);
      await expectError(t.client, 'BAD_USER_INPUT', `{ apps(first: -1) { nodes { id } } }`);
      await expectError(
        t.client,
        'BAD_USER_INPUT',
        `query ($id: ID!) { app(id: $id) { messages(first: 1000) { nodes { id } } } }`,
        { id: appId },
      );
      await expectError(
        t.client,
        'BAD_USER_INPUT',
        `query ($id: ID!) { app(id: $id) { endpoints(first: 101) { nodes { id } } } }`,
        { id: appId },
      );
    });
  });

  describe('malformed values', () => {
    it.each([
      [
        'a DateTime that is not a date (variable)',
        `query ($id: ID!, $s: DateTime) { app(id: $id) { messages(since: $s) { nodes { id } } } }`,
        { s: 'yesterday' },
      ],
      [
        'a DateTime without a time (variable)',
        `query ($id: ID!, $s: DateTime) { app(id: $id) { messages(since: $s) { nodes { id } } } }`,
        { s: '2026-01-01' },
      ],
      [
        'a DateTime that is a number (variable)',
        `query ($id: ID!, $s: DateTime) { app(id: $id) { messages(until: $s) { nodes { id } } } }`,
        { s: 1700000000 },
      ],
      [
        'an impossible DateTime (literal)',
        `query ($id: ID!) { app(id: $id) { messages(since: "2026-13-45T99:00:00Z") { nodes { id } } } }`,
        {},
      ],
      [
        'a DateTime literal that is an int',
        `query ($id: ID!) { app(id: $id) { messages(since: 5) { nodes { id } } } }`,
        {},
      ],
      [
        'an Int variable given a string',
        `query ($first: Int) { apps(first: $first) { nodes { id } } }`,
        { first: 'ten' },
      ],
      ['an Int variable over 2^31', `query ($first: Int) { apps(first: $first) { nodes { id } } }`, { first: 2 ** 40 }],
      [
        'an enum variable with an unknown value',
        `query ($id: ID!, $s: DeliveryStatus) { app(id: $id) { messages(status: $s) { nodes { id } } } }`,
        { s: 'LOST' },
      ],
      ['a required input missing', `mutation ($input: CreateAppInput!) { createApp(input: $input) { id } }`, {}],
      [
        'an input with an unknown field',
        `mutation ($input: CreateAppInput!) { createApp(input: $input) { id } }`,
        { input: { name: 'x', colour: 'red' } },
      ],
      [
        'a list given an object',
        `mutation ($input: CreateAppInput!) { createApp(input: $input) { id } }`,
        { input: { name: 'x', retrySchedule: { a: 1 } } },
      ],
      ['a cursor that is garbage', `{ apps(after: "%%%not-a-cursor") { nodes { id } } }`, {}],
    ])('%s → BAD_USER_INPUT', async (_what, query, variables) => {
      const result = await t.client.raw(query, { id: appId, ...variables });
      expect(codesOf(result), JSON.stringify(result.errors)).toEqual(['BAD_USER_INPUT']);
    });

    it('unknown fields and syntax errors answer their own codes, never INTERNAL_SERVER_ERROR', async () => {
      expect(codesOf(await t.client.raw(`{ nope }`))).toEqual(['GRAPHQL_VALIDATION_FAILED']);
      expect(codesOf(await t.client.raw(`{ apps(first: "x") { nodes { id } } }`))).toEqual([
        'GRAPHQL_VALIDATION_FAILED',
      ]);
      expect(codesOf(await t.client.raw(`{ apps { `))).toEqual(['GRAPHQL_PARSE_FAILED']);
    });

    it('node(id:) with garbage, a secret id or a portal session id answers null like a missing id', async () => {
      for (const id of [
        'garbage',
        '',
        'app_',
        'sec_00000000000000000000000000',
        'pts_00000000000000000000000000',
        'app_00000000000000000000000000',
      ]) {
        const result = await t.client.raw<{ node: null }>(`query ($id: ID!) { node(id: $id) { id } }`, { id });
        expect(result, id).toEqual({ data: { node: null }, status: 200 });
      }
      const nodes = await t.client.raw<{ nodes: unknown[] }>(`query ($ids: [ID!]!) { nodes(ids: $ids) { id } }`, {
        ids: ['garbage', appId, 'sec_00000000000000000000000000'],
      });
      expect(nodes).toEqual({ data: { nodes: [null, { id: appId }, null] }, status: 200 });
    });
  });

  describe('HTTP', () => {
    it('a body over 2 MiB answers 413 PAYLOAD_TOO_LARGE without being read', async () => {
      const before = await t.dispatch.db.prisma.message.count();
      const big = JSON.stringify({
        query: `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated } }`,
        variables: { input: { appId, recipientId: 'r', eventType: 'x', data: { blob: 'x'.repeat(2 * 1024 * 1024) } } },
      });
      const response = await post(big);
      expect(response.status).toBe(413);
      const body = (await response.json()) as { errors: { extensions: { code: string } }[] };
      expect(body.errors[0]!.extensions.code).toBe('PAYLOAD_TOO_LARGE');
      expect(await t.dispatch.db.prisma.message.count()).toBe(before);
    });

    it('a chunked body (no Content-Length) is held to the same limit: over it 413, under it served', async () => {
      const chunked = (payload: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const url = new URL(`${t.url}/graphql`);
          const req = request(
            {
              host: url.hostname,
              port: url.port,
              path: url.pathname,
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${t.apiKey}` },
            },
            (res) => {
              let body = '';
              res.on('data', (c) => (body += c));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on('error', reject);
          // Several writes without a length: Node sends Transfer-Encoding: chunked.
          for (let i = 0; i < payload.length; i += 256 * 1024) req.write(payload.slice(i, i + 256 * 1024));
          req.end();
        });
      const big = JSON.stringify({ query: '{ viewer { kind } }', variables: { pad: 'x'.repeat(3 * 1024 * 1024) } });
      const over = await chunked(big);
      expect(over.status).toBe(413);
      expect(JSON.parse(over.body).errors[0].extensions.code).toBe('PAYLOAD_TOO_LARGE');
      const small = await chunked(JSON.stringify({ query: '{ viewer { kind } }' }));
      expect(small.status).toBe(200);
      expect(JSON.parse(small.body)).toEqual({ data: { viewer: { kind: 'OPERATOR' } } });
    });

    it('malformed JSON, a non-string query, batches and mutations over GET are 4xx, never 500', async () => {
      for (const [body, status] of [
        ['{not json', 400],
        [JSON.stringify({ query: 123 }), 400],
        [JSON.stringify({ query: '{ viewer { kind } }', variables: 'x' }), 400],
        [JSON.stringify([{ query: '{ viewer { kind } }' }]), 400],
      ] as const) {
        const response = await post(body);
        expect(response.status, body).toBe(status);
        const json = (await response.json()) as { errors: { extensions: { code: string } }[] };
        expect(json.errors[0]!.extensions.code).toBe('BAD_REQUEST');
      }
      const get = await fetch(
        `${t.url}/graphql?query=${encodeURIComponent('mutation { createApp(input: { name: "x" }) { id } }')}`,
        {
          headers: { authorization: `Bearer ${t.apiKey}` },
        },
      );
      expect(get.status).toBe(405);
      expect(await t.dispatch.db.prisma.app.count({ where: { name: 'x' } })).toBe(0);
    });

    it('a query over GET works', async () => {
      const response = await fetch(`${t.url}/graphql?query=${encodeURIComponent('{ viewer { kind } }')}`, {
        headers: { authorization: `Bearer ${t.apiKey}`, accept: 'application/json' },
      });
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ data: { viewer: { kind: 'OPERATOR' } } });
    });
  });

  describe('health, readiness and metrics', () => {
    it('/healthz answers 200 without a token', async () => {
      const response = await fetch(`${t.url}/healthz`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({ status: 'ok' });
    });

    it('/readyz answers 200 when the database is reachable and migrated, 503 when a migration is missing', async () => {
      const response = await fetch(`${t.url}/readyz`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: 'ready' });

      const { rows } = await t.dispatch.db.pool.query<{ id: string }>(
        `SELECT id FROM _prisma_migrations ORDER BY migration_name DESC LIMIT 1`,
      );
      const saved = await t.dispatch.db.pool.query(`SELECT * FROM _prisma_migrations WHERE id = $1`, [rows[0]!.id]);
      await t.dispatch.db.pool.query(`DELETE FROM _prisma_migrations WHERE id = $1`, [rows[0]!.id]);
      try {
        const unready = await fetch(`${t.url}/readyz`);
        expect(unready.status).toBe(503);
        expect(await unready.json()).toMatchObject({
          status: 'unavailable',
          reason: expect.stringMatching(/migrations pending/),
        });
      } finally {
        const row = saved.rows[0] as Record<string, unknown>;
        const columns = Object.keys(row);
        await t.dispatch.db.pool.query(
          `INSERT INTO _prisma_migrations (${columns.map((c) => `"${c}"`).join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')})`,
          columns.map((c) => row[c]),
        );
      }
      expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    });

    it('/metrics counts HTTP requests and GraphQL errors by code, in Prometheus text format', async () => {
      await t.client.raw(`{ apps(first: 101) { nodes { id } } }`);
      const response = await fetch(`${t.url}/metrics`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
      const text = await response.text();
      expect(text).toMatch(/^# TYPE dispatch_http_requests_total counter$/m);
      expect(text).toMatch(/^dispatch_http_requests_total\{route="graphql",status="200"\} [1-9]\d*$/m);
      expect(text).toMatch(/^dispatch_graphql_errors_total\{code="BAD_USER_INPUT"\} [1-9]\d*$/m);
      expect(text).toMatch(/^dispatch_http_request_duration_seconds_bucket\{le="0.1",route="graphql"\} \d+$/m);
    });
  });
});
