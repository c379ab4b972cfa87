import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArchiveEventTypeDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  MessageDocument,
  SendMessageDocument,
  UpdateEndpointDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

const SEND = `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { deduplicated message { id } } }`;

describe('sendMessage', () => {
  let t: TestDispatch;
  let appId: string;

  /** Rows that sendMessage writes, to prove a refusal wrote none. */
  const rowCounts = async () => {
    const { rows } = await t.dispatch.db.pool.query<{ messages: number; deliveries: number; recipients: number }>(
      `SELECT (SELECT count(*)::int FROM "Message") AS messages, (SELECT count(*)::int FROM "Delivery") AS deliveries,
              (SELECT count(*)::int FROM "Recipient") AS recipients`,
    );
    return rows[0]!;
  };

  const endpoint = async (recipientId: string, extra: { eventTypes?: string[]; disabled?: boolean } = {}) =>
    (
      await t.client.request(CreateEndpointDocument, {
        input: { appId, recipientId, url: `https://example.com/${recipientId}`, ...extra },
      })
    ).createEndpoint.id;

  beforeAll(async () => {
    // API role only: deliveries stay as sendMessage left them, and nothing is sent to the example.com endpoints.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Sending' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.paid' } });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.voided' } });
    await t.client.request(CreateEventTypeDocument, {
      input: {
        appId,
        name: 'user.created',
        schema: {
          type: 'object',
          required: ['email', 'age'],
          properties: { email: { type: 'string', format: 'email' }, age: { type: 'integer', minimum: 0 } },
          additionalProperties: false,
        },
      },
    });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'retired.event' } });
    await t.client.request(ArchiveEventTypeDocument, { input: { appId, name: 'retired.event' } });
  });
  afterAll(async () => t.stop());

  it('stores the data and makes one PENDING delivery per enabled endpoint whose filter matches', async () => {
    const all = await endpoint('routing');
    const paidOnly = await endpoint('routing', { eventTypes: ['invoice.paid'] });
    const both = await endpoint('routing', { eventTypes: ['invoice.voided', 'invoice.paid'] });
    await endpoint('routing', { eventTypes: ['invoice.voided'] });
    await endpoint('routing', { disabled: true });
    const laterDisabled = await endpoint('routing');
    await t.client.request(UpdateEndpointDocument, { input: { id: laterDisabled, disabled: true } });
    await endpoint('someone_else');

    const data = { invoice: { id: 'in_1', lines: [1, 2.5, 'x', null, true] }, amount: 4200, note: 'ünïcødé ✓' };
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'routing', eventType: 'invoice.paid', data },
    });
    expect(sendMessage.deduplicated).toBe(false);
    expect(sendMessage.message).toMatchObject({ eventType: 'invoice.paid', recipientId: 'routing', data });
    expect(sendMessage.message.id).toMatch(/^msg_/);
    expect(sendMessage.message.messageId).toBe(sendMessage.message.id);
    const delivered = sendMessage.message.deliveries.nodes;
    expect(delivered.map((d) => d.endpoint.id).sort()).toEqual([all, paidOnly, both].sort());
    for (const d of delivered) {
      expect(d.status).toBe('PENDING');
      expect(d.attemptCount).toBe(0);
      expect(d.id).toMatch(/^dlv_/);
    }

    const { message } = await t.client.request(MessageDocument, { appId, id: sendMessage.message.id });
    expect(message?.data).toEqual(data);
    const rows = await t.dispatch.db.prisma.delivery.findMany({ where: { messageId: sendMessage.message.id } });
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatchObject({ status: 'PENDING', appId });
  });

  it('accepts any JSON value as data: numbers, strings, arrays, empty objects', async () => {
    for (const data of [0, 'text', [1, { a: [] }], {}, false]) {
      const { sendMessage } = await t.client.request(SendMessageDocument, {
        input: { appId, recipientId: 'values', eventType: 'invoice.paid', data },
      });
      expect(sendMessage.message.data).toEqual(data);
    }
  });

  it('a message to a recipient with no endpoints is stored with no deliveries', async () => {
    const before = await rowCounts();
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'nobody_listens', eventType: 'invoice.paid', data: { a: 1 } },
    });
    expect(sendMessage.message.deliveries.nodes).toEqual([]);
    const after = await rowCounts();
    expect(after).toEqual({
      messages: before.messages + 1,
      deliveries: before.deliveries,
      recipients: before.recipients + 1,
    });
  });

  it('creates the recipient on first use, once', async () => {
    expect(await t.dispatch.db.prisma.recipient.count({ where: { appId, uid: 'first_use' } })).toBe(0);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        t.client.request(SendMessageDocument, {
          input: { appId, recipientId: 'first_use', eventType: 'invoice.paid', data: { i } },
        }),
      ),
    );
    expect(await t.dispatch.db.prisma.recipient.count({ where: { appId, uid: 'first_use' } })).toBe(1);
    const recipient = await t.client.raw<{ recipient: { messages: { nodes: unknown[] } } }>(
      `query ($appId: ID!) { recipient(appId: $appId, recipientId: "first_use") { messages(first: 10) { nodes { id } } } }`,
      { appId },
    );
    expect(recipient.data?.recipient.messages.nodes).toHaveLength(5);
  });

  it('validates data against the JSON Schema of its event type (INVALID_PAYLOAD, with the problems) and writes nothing', async () => {
    const ok = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'schema', eventType: 'user.created', data: { email: 'a@example.com', age: 30 } },
    });
    expect(ok.sendMessage.deduplicated).toBe(false);

    const before = await rowCounts();
    for (const data of [
      { email: 'a@example.com' },
      { email: 'not an email', age: 1 },
      { email: 'a@example.com', age: -1 },
      { email: 'a@example.com', age: 1, extra: 1 },
      [1],
      'x',
    ]) {
      const refused = await expectError(t.client, 'INVALID_PAYLOAD', SEND, {
        input: { appId, recipientId: 'schema_refused', eventType: 'user.created', data },
      });
      const problems = refused.errors![0]!.extensions!.problems as { path: string; message: string }[];
      expect(problems.length).toBeGreaterThan(0);
      expect(problems[0]).toEqual({ path: expect.any(String), message: expect.any(String) });
    }
    expect(await rowCounts()).toEqual(before);
  });

  it('refuses unknown and archived event types with UNKNOWN_EVENT_TYPE and writes nothing', async () => {
    await endpoint('unknown_types');
    const before = await rowCounts();
    await expectError(t.client, 'UNKNOWN_EVENT_TYPE', SEND, {
      input: { appId, recipientId: 'unknown_types', eventType: 'no.such', data: {} },
    });
    await expectError(t.client, 'UNKNOWN_EVENT_TYPE', SEND, {
      input: { appId, recipientId: 'unknown_types', eventType: 'retired.event', data: {} },
    });
    await expectError(t.client, 'UNKNOWN_EVENT_TYPE', SEND, {
      input: { appId, recipientId: 'new_recipient', eventType: 'no.such', data: {} },
    });
    expect(await rowCounts()).toEqual(before);
  });

  it('an event type archived, or created again with another schema, takes effect on the very next send', async () => {
    const schemaOf = (field: string) => ({
      type: 'object',
      required: [field],
      properties: { [field]: { type: 'integer' } },
    });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'shape.changes', schema: schemaOf('x') } });
    const send = (data: unknown) => ({ input: { appId, recipientId: 'shapes', eventType: 'shape.changes', data } });
    await t.client.request(SendMessageDocument, send({ x: 1 }));
    await t.client.request(ArchiveEventTypeDocument, { input: { appId, name: 'shape.changes' } });
    await expectError(t.client, 'UNKNOWN_EVENT_TYPE', SEND, send({ x: 2 }));
    // Created again, the same event type now requires y.
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'shape.changes', schema: schemaOf('y') } });
    await expectError(t.client, 'INVALID_PAYLOAD', SEND, send({ x: 3 }));
    const ok = await t.client.request(SendMessageDocument, send({ y: 4 }));
    expect(ok.sendMessage.message.data).toEqual({ y: 4 });
  });

  it('a recipient with many matching endpoints gets a delivery for each', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await endpoint('many_endpoints'));
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'many_endpoints', eventType: 'invoice.paid', data: { n: 7 } },
    });
    expect(sendMessage.message.deliveries.nodes.map((d) => d.endpoint.id).sort()).toEqual(ids.sort());
    const { rows } = await t.dispatch.db.pool.query(
      `SELECT count(*)::int AS n FROM pgboss.job j JOIN "Delivery" d ON d.id = j.data->>'d' WHERE j.name = 'dispatch-try' AND d."messageId" = $1`,
      [sendMessage.message.id],
    );
    expect(rows[0].n).toBe(7);
  });

  it('a message id sent again to a recipient never seen is a conflict that creates no recipient', async () => {
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'owner', eventType: 'invoice.paid', data: {}, messageId: 'taken-id' },
    });
    const before = await rowCounts();
    await expectError(t.client, 'IDEMPOTENCY_CONFLICT', SEND, {
      input: { appId, recipientId: 'never_seen', eventType: 'invoice.paid', data: {}, messageId: 'taken-id' },
    });
    expect(await rowCounts()).toEqual(before);
  });

  it('concurrent sends are stored together, several per statement, and one bad send in the burst fails alone', async () => {
    await endpoint('burst_a');
    await endpoint('burst_b', { eventTypes: ['invoice.voided'] });
    const sends = Array.from({ length: 60 }, (_, i) =>
      t.client.raw<{ sendMessage: { message: { id: string } } }>(SEND, {
        input: {
          appId,
          recipientId: i % 2 ? 'burst_a' : 'burst_b',
          eventType: i % 3 ? 'invoice.paid' : 'invoice.voided',
          data: { i },
        },
      }),
    );
    const bad = t.client.raw(SEND, { input: { appId, recipientId: 'burst_a', eventType: 'retired.event', data: {} } });
    const results = await Promise.all(sends);
    expect(results.every((r) => !r.errors && r.data?.sendMessage.message.id)).toBe(true);
    expect((await bad).errors?.[0]?.extensions?.code).toBe('UNKNOWN_EVENT_TYPE');
    const ids = results.map((r) => r.data!.sendMessage.message.id);
    const { rows } = await t.dispatch.db.pool.query<{
      messages: number;
      statements: number;
      deliveries: number;
      jobs: number;
    }>(
      `SELECT count(*)::int AS messages, count(DISTINCT m."createdAt")::int AS statements,
              (SELECT count(*)::int FROM "Delivery" d WHERE d."messageId" = ANY($1::text[])) AS deliveries,
              (SELECT count(*)::int FROM pgboss.job j JOIN "Delivery" d ON d.id = j.data->>'d' WHERE j.name = 'dispatch-try' AND d."messageId" = ANY($1::text[])) AS jobs
       FROM "Message" m WHERE m.id = ANY($1::text[])`,
      [ids],
    );
    // burst_a (odd i) takes every event type; burst_b (even i) only invoice.voided (i % 3 === 0).
    const expected = ids.filter((_, i) => i % 2 === 1 || i % 3 === 0).length;
    expect(rows[0]).toMatchObject({ messages: 60, deliveries: expected, jobs: expected });
    // A statement's now() is one instant: fewer distinct times than messages means several per statement.
    expect(rows[0]!.statements).toBeLessThan(60);
  });

  it('an event type of another app is unknown here', async () => {
    const other = (await t.client.request(CreateAppDocument, { input: { name: 'Other' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId: other, name: 'only.there' } });
    await expectError(t.client, 'UNKNOWN_EVENT_TYPE', SEND, {
      input: { appId, recipientId: 'r', eventType: 'only.there', data: {} },
    });
  });

  it('refuses data over 1 MiB with PAYLOAD_TOO_LARGE before anything is written; exactly 1 MiB is accepted', async () => {
    await endpoint('big');
    const limit = 1024 * 1024;
    // {"blob":"…"} is 11 bytes around the string.
    const atLimit = { blob: 'x'.repeat(limit - 11) };
    expect(Buffer.byteLength(JSON.stringify(atLimit))).toBe(limit);
    const overLimit = { blob: 'x'.repeat(limit - 10) };
    // Multi-byte characters count by their UTF-8 bytes, not by characters.
    const multiByte = { blob: 'é'.repeat(limit / 2) };

    const before = await rowCounts();
    for (const data of [overLimit, multiByte]) {
      const refused = await expectError(t.client, 'PAYLOAD_TOO_LARGE', SEND, {
        input: { appId, recipientId: 'big_new_recipient', eventType: 'invoice.paid', data, messageId: 'big-1' },
      });
      expect(refused.errors![0]!.extensions).toMatchObject({ limit });
    }
    expect(await rowCounts()).toEqual(before);
    expect(await t.dispatch.db.prisma.recipient.count({ where: { uid: 'big_new_recipient' } })).toBe(0);

    const accepted = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'big', eventType: 'invoice.paid', data: atLimit },
    });
    expect(accepted.sendMessage.message.deliveries.nodes).toHaveLength(1);
  });

  describe('malformed input is BAD_USER_INPUT (or NOT_FOUND for ids) and writes nothing', () => {
    const cases: [string, string, Record<string, unknown>][] = [
      ['an unknown app id', 'NOT_FOUND', { appId: 'app_00000000000000000000000000' }],
      ['a garbage app id', 'NOT_FOUND', { appId: '\'; DROP TABLE "Message"; --' }],
      ['an empty recipient id', 'BAD_USER_INPUT', { recipientId: '' }],
      ['a recipient id with a space', 'BAD_USER_INPUT', { recipientId: 'customer 1' }],
      ['a recipient id with a newline', 'BAD_USER_INPUT', { recipientId: 'customer\n1' }],
      ['a recipient id over 256 characters', 'BAD_USER_INPUT', { recipientId: 'r'.repeat(257) }],
      ['an empty event type', 'BAD_USER_INPUT', { eventType: '' }],
      ['an event type with a space', 'BAD_USER_INPUT', { eventType: 'invoice paid' }],
      ['an event type with an empty segment', 'BAD_USER_INPUT', { eventType: 'invoice..paid' }],
      ['a messageId with a space', 'BAD_USER_INPUT', { messageId: 'my id' }],
      ['an empty messageId', 'BAD_USER_INPUT', { messageId: '' }],
      ['an idempotencyKey over 256 characters', 'BAD_USER_INPUT', { idempotencyKey: 'k'.repeat(257) }],
      ['messageId and idempotencyKey that differ', 'BAD_USER_INPUT', { messageId: 'a-1', idempotencyKey: 'a-2' }],
      ['data missing', 'BAD_USER_INPUT', { data: undefined }],
      ['data null', 'BAD_USER_INPUT', { data: null }],
      ['a recipientId that is not a string', 'BAD_USER_INPUT', { recipientId: 42 }],
    ];
    it.each(cases)('%s → %s', async (_what, code, override) => {
      const before = await rowCounts();
      const input = { appId, recipientId: 'malformed', eventType: 'invoice.paid', data: { a: 1 }, ...override };
      if ('data' in override && override.data === undefined) delete (input as Record<string, unknown>).data;
      await expectError(t.client, code, SEND, { input });
      expect(await rowCounts()).toEqual(before);
    });

    it('a literal data value in the query text works like a variable', async () => {
      const result = await t.client.raw<{ sendMessage: { message: { data: unknown } } }>(
        `mutation { sendMessage(input: { appId: "${appId}", recipientId: "literal", eventType: "invoice.paid", data: { a: [1, "two", { b: null }], c: 1.5 } }) { message { data } } }`,
      );
      expect(result.errors).toBeUndefined();
      expect(result.data?.sendMessage.message.data).toEqual({ a: [1, 'two', { b: null }], c: 1.5 });
    });

    it('an enum literal as data is BAD_USER_INPUT', async () => {
      await expectError(
        t.client,
        'BAD_USER_INPUT',
        `mutation { sendMessage(input: { appId: "${appId}", recipientId: "literal", eventType: "invoice.paid", data: SOME_ENUM }) { message { id } } }`,
      );
    });
  });
});
