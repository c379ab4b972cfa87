import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument } from '../../packages/client/src/index.ts';
import { MAX_SCHEMA_BYTES, MAX_SCHEMA_PATTERNS } from '../../src/domain/json-schema.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

const CREATE_EVENT_TYPE = `mutation ($input: CreateEventTypeInput!) { createEventType(input: $input) { name } }`;
const SEND = `mutation ($input: SendMessageInput!) { sendMessage(input: $input) { message { id } } }`;

/**
 * An operator's JSON Schema cannot hold the API's event loop: patterns run on
 * RE2 (linear time), uniqueItems is one pass, and what RE2 cannot run is
 * refused when the schema is saved. On JavaScript's own engine `^(a+)+$`
 * against 40 characters would run for hours, and uniqueItems over 20,000
 * objects took 20 s, with every tenant's request waiting behind them.
 */
describe("an event type's JSON Schema cannot freeze the API", () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Schemas' } })).createApp.id;
  });
  afterAll(async () => t.stop());

  const createEventType = (name: string, schema: unknown) =>
    t.client.raw(CREATE_EVENT_TYPE, { input: { appId, name, schema } });

  /** Resolves with the milliseconds /healthz took while `work` ran. */
  async function healthWhile(work: Promise<unknown>): Promise<number> {
    const started = performance.now();
    const health = await fetch(`${t.url}/healthz`);
    expect(health.status).toBe(200);
    const ms = performance.now() - started;
    await work;
    return ms;
  }

  it('a catastrophic pattern (^(a+)+$) is matched in linear time: the send is refused at once, /healthz stays answered', async () => {
    expect((await createEventType('evil.pattern', { type: 'string', pattern: '^(a+)+$' })).errors).toBeUndefined();
    const send = expectError(t.client, 'INVALID_PAYLOAD', SEND, {
      input: { appId, recipientId: 'r', eventType: 'evil.pattern', data: `${'a'.repeat(40)}!` },
    });
    // Loose bound for a busy machine; on the backtracking engine this takes hours.
    expect(await healthWhile(send)).toBeLessThan(5_000);
    const accepted = await t.client.raw(SEND, {
      input: { appId, recipientId: 'r', eventType: 'evil.pattern', data: 'a'.repeat(100_000) },
    });
    expect(accepted.errors).toBeUndefined();
  });

  it('patternProperties run on RE2 too', async () => {
    expect(
      (await createEventType('evil.keys', { type: 'object', patternProperties: { '^(a+)+$': { type: 'integer' } } }))
        .errors,
    ).toBeUndefined();
    await expectError(t.client, 'INVALID_PAYLOAD', SEND, {
      input: { appId, recipientId: 'r', eventType: 'evil.keys', data: { aaaa: 'x' } },
    });
    const sent = await t.client.raw(SEND, {
      input: { appId, recipientId: 'r', eventType: 'evil.keys', data: { [`${'a'.repeat(40)}!`]: 'x' } },
    });
    expect(sent.errors).toBeUndefined();
  });

  it('uniqueItems over 20,000 distinct objects is one pass; duplicates are found whatever the key order', async () => {
    expect((await createEventType('unique.items', { type: 'array', uniqueItems: true })).errors).toBeUndefined();
    const items = Array.from({ length: 20_000 }, (_, i) => ({ id: i, kind: 'item' }));
    const send = t.client.raw(SEND, { input: { appId, recipientId: 'r', eventType: 'unique.items', data: items } });
    expect(await healthWhile(send)).toBeLessThan(5_000);
    expect((await send).errors).toBeUndefined();
    await expectError(t.client, 'INVALID_PAYLOAD', SEND, {
      input: { appId, recipientId: 'r', eventType: 'unique.items', data: [{ a: 1, b: [2] }, 3, { b: [2], a: 1 }] },
    });
  });

  it('a pattern RE2 cannot run (lookahead, backreference) is refused when the schema is saved', async () => {
    for (const pattern of ['^(?=.*\\d)\\w+$', '^(a)\\1$']) {
      const refused = await expectError(t.client, 'BAD_USER_INPUT', CREATE_EVENT_TYPE, {
        input: { appId, name: 'unsupported.pattern', schema: { type: 'string', pattern } },
      });
      expect(refused.errors![0]!.message).toMatch(/RE2/);
    }
  });

  it('JavaScript pattern syntax works: \\u escapes, \\p{L}, \\d, named groups', async () => {
    const schema = { type: 'string', pattern: '^(?<word>[\\p{L}\\d]+)\\u00e9$' };
    expect((await createEventType('js.syntax', schema)).errors).toBeUndefined();
    const send = (data: string) =>
      t.client.raw(SEND, { input: { appId, recipientId: 'r', eventType: 'js.syntax', data } });
    expect((await send('Ωmega42é')).errors).toBeUndefined();
    await expectError(t.client, 'INVALID_PAYLOAD', SEND, {
      input: { appId, recipientId: 'r', eventType: 'js.syntax', data: 'omega-é' },
    });
  });

  it(`a schema over ${MAX_SCHEMA_BYTES} bytes is refused when saved`, async () => {
    const schema = { enum: Array.from({ length: MAX_SCHEMA_BYTES / 8 }, (_, i) => `value-${i}`) };
    const refused = await expectError(t.client, 'BAD_USER_INPUT', CREATE_EVENT_TYPE, {
      input: { appId, name: 'huge.schema', schema },
    });
    expect(refused.errors![0]!.message).toMatch(/limit/);
  });

  it(`a schema with more than ${MAX_SCHEMA_PATTERNS} patterns is refused when saved (RE2 compiles each in about 4 ms)`, async () => {
    const properties = Object.fromEntries(
      Array.from({ length: MAX_SCHEMA_PATTERNS + 1 }, (_, i) => [`p${i}`, { type: 'string', pattern: `^v${i}-` }]),
    );
    const refused = await expectError(t.client, 'BAD_USER_INPUT', CREATE_EVENT_TYPE, {
      input: { appId, name: 'many.patterns', schema: { type: 'object', properties } },
    });
    expect(refused.errors![0]!.message).toMatch(/patterns; the limit is/);
  });

  it("a schema exponential in the data's depth holds a worker thread, not the API: VALIDATION_TIMEOUT, and other workspaces' sends go on", async () => {
    const other = await t.newWorkspace();
    const otherApp = (await other.client.request(CreateAppDocument, { input: { name: 'Other' } })).createApp.id;
    const created = await other.client.raw(CREATE_EVENT_TYPE, {
      input: { appId: otherApp, name: 'order.paid', schema: { type: 'object', required: ['id'] } },
    });
    expect(created.errors).toBeUndefined();
    // Each level of nesting tries both branches: 25 levels would run for minutes.
    const node = {
      anyOf: [
        { type: 'array', items: { $ref: '#/$defs/n' } },
        { type: 'array', items: { $ref: '#/$defs/n' } },
        { const: 'y' },
      ],
    };
    expect((await createEventType('deep.tree', { $defs: { n: node }, $ref: '#/$defs/n' })).errors).toBeUndefined();

    // Three such sends keep this workspace's checks busy for three time limits, one after the other.
    const order: string[] = [];
    const slowSends = [1, 2, 3].map(() =>
      expectError(t.client, 'VALIDATION_TIMEOUT', SEND, {
        input: {
          appId,
          recipientId: 'r',
          eventType: 'deep.tree',
          data: JSON.parse(`${'['.repeat(25)}"x"${']'.repeat(25)}`),
        },
      }).then(() => order.push('slow send refused')),
    );
    // Meanwhile: the API answers, and another workspace's messages are checked against their schema and stored.
    expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
    order.push('healthz');
    const sent = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        other.client.raw(SEND, {
          input: { appId: otherApp, recipientId: 'r', eventType: 'order.paid', data: { id: i } },
        }),
      ),
    );
    expect(sent.map((s) => s.errors)).toEqual(sent.map(() => undefined));
    order.push('other workspace sent');
    await Promise.all(slowSends);
    // On the event loop, nothing else would be answered before all three were done.
    expect(order.indexOf('healthz')).toBeLessThan(order.lastIndexOf('slow send refused'));
    expect(order.indexOf('other workspace sent')).toBeLessThan(order.lastIndexOf('slow send refused'));
  });
});
