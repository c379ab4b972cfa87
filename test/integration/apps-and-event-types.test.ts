import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppDocument,
  ArchiveEventTypeDocument,
  CreateAppDocument,
  CreateEventTypeDocument,
  UpdateAppDocument,
} from '../../packages/client/src/index.ts';
import { DEFAULT_RETRY_SCHEDULE } from '../../src/webhooks/retry.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

const CREATE_APP = `mutation ($input: CreateAppInput!) { createApp(input: $input) { id retrySchedule attemptTimeoutMs } }`;
const UPDATE_APP = `mutation ($input: UpdateAppInput!) { updateApp(input: $input) { id name retrySchedule attemptTimeoutMs } }`;
const CREATE_EVENT_TYPE = `mutation ($input: CreateEventTypeInput!) { createEventType(input: $input) { id name } }`;
const ARCHIVE_EVENT_TYPE = `mutation ($input: ArchiveEventTypeInput!) { archiveEventType(input: $input) { id archived } }`;

describe('apps and event types', () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch();
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Catalog' } })).createApp.id;
  });
  afterAll(async () => t.stop());

  describe('createApp', () => {
    it('defaults to the default retry schedule and a 15 s attempt timeout', async () => {
      const { createApp } = await t.client.request(CreateAppDocument, { input: { name: '  Billing events ' } });
      expect(createApp.id).toMatch(/^app_[0-9a-z]{26}$/);
      expect(createApp.name).toBe('Billing events');
      expect(createApp.retrySchedule).toEqual([...DEFAULT_RETRY_SCHEDULE]);
      expect(createApp.attemptTimeoutMs).toBe(15_000);
      const row = await t.dispatch.db.prisma.app.findUniqueOrThrow({ where: { id: createApp.id } });
      expect(row).toMatchObject({ retrySchedule: [], attemptTimeoutMs: null });
    });

    it('keeps a per-app retry schedule and attempt timeout', async () => {
      const { createApp } = await t.client.request(CreateAppDocument, {
        input: { name: 'Fast', retrySchedule: [1, 2, 3], attemptTimeoutMs: 2500 },
      });
      expect(createApp).toMatchObject({ retrySchedule: [1, 2, 3], attemptTimeoutMs: 2500 });
      const { app } = await t.client.request(AppDocument, { id: createApp.id });
      expect(app).toMatchObject({ retrySchedule: [1, 2, 3], attemptTimeoutMs: 2500 });
    });

    it.each([
      ['a zero delay', { retrySchedule: [0] }],
      ['a negative delay', { retrySchedule: [5, -1] }],
      ['a delay over 7 days', { retrySchedule: [7 * 24 * 3600 + 1] }],
      ['more than 20 delays', { retrySchedule: Array.from({ length: 21 }, () => 1) }],
      ['a timeout under 100 ms', { attemptTimeoutMs: 99 }],
      ['a timeout over 60 s', { attemptTimeoutMs: 60_001 }],
      ['a blank name', { name: '   ' }],
      ['a name over 200 characters', { name: 'x'.repeat(201) }],
    ])('refuses %s with BAD_USER_INPUT and stores nothing', async (_what, override) => {
      const before = await t.dispatch.db.prisma.app.count();
      await expectError(t.client, 'BAD_USER_INPUT', CREATE_APP, { input: { name: 'Refused', ...override } });
      expect(await t.dispatch.db.prisma.app.count()).toBe(before);
    });

    it('refuses a non-integer timeout at the GraphQL layer with BAD_USER_INPUT', async () => {
      await expectError(t.client, 'BAD_USER_INPUT', CREATE_APP, { input: { name: 'Float', attemptTimeoutMs: 1.5 } });
    });
  });

  describe('updateApp', () => {
    it('changes only what it is given; an empty schedule restores the default; null timeout restores 15 s', async () => {
      const { createApp } = await t.client.request(CreateAppDocument, {
        input: { name: 'Before', retrySchedule: [10], attemptTimeoutMs: 1000 },
      });
      const renamed = await t.client.request(UpdateAppDocument, { input: { id: createApp.id, name: 'After' } });
      expect(renamed.updateApp).toMatchObject({ name: 'After', retrySchedule: [10], attemptTimeoutMs: 1000 });
      const reset = await t.client.request(UpdateAppDocument, {
        input: { id: createApp.id, retrySchedule: [], attemptTimeoutMs: null },
      });
      expect(reset.updateApp).toMatchObject({
        name: 'After',
        retrySchedule: [...DEFAULT_RETRY_SCHEDULE],
        attemptTimeoutMs: 15_000,
      });
    });

    it('validates like createApp and answers NOT_FOUND for an unknown app', async () => {
      await expectError(t.client, 'BAD_USER_INPUT', UPDATE_APP, { input: { id: appId, retrySchedule: [0] } });
      await expectError(t.client, 'BAD_USER_INPUT', UPDATE_APP, { input: { id: appId, attemptTimeoutMs: 0 } });
      await expectError(t.client, 'BAD_USER_INPUT', UPDATE_APP, { input: { id: appId, name: '' } });
      await expectError(t.client, 'NOT_FOUND', UPDATE_APP, {
        input: { id: 'app_00000000000000000000000000', name: 'x' },
      });
      await expectError(t.client, 'NOT_FOUND', UPDATE_APP, { input: { id: 'not an id', name: 'x' } });
    });
  });

  describe('createEventType', () => {
    it('stores name, description and a JSON Schema', async () => {
      const schema = { type: 'object', required: ['amount'], properties: { amount: { type: 'integer' } } };
      const { createEventType } = await t.client.request(CreateEventTypeDocument, {
        input: { appId, name: 'invoice.paid', description: 'An invoice was paid', schema },
      });
      expect(createEventType).toMatchObject({
        name: 'invoice.paid',
        description: 'An invoice was paid',
        schema,
        archived: false,
      });
      expect(createEventType.id).toMatch(/^evt_/);
    });

    it.each(['user.profile-updated', 'a', 'A_1.b-2.c', 'x'.repeat(256)])('accepts the name %s', async (name) => {
      const { createEventType } = await t.client.request(CreateEventTypeDocument, { input: { appId, name } });
      expect(createEventType.name).toBe(name);
    });

    it.each(['', 'invoice..paid', '.invoice', 'invoice.', 'invoice paid', 'invoice/paid', 'ünicode', 'x'.repeat(257)])(
      'refuses the name %j with BAD_USER_INPUT',
      async (name) => {
        await expectError(t.client, 'BAD_USER_INPUT', CREATE_EVENT_TYPE, { input: { appId, name } });
      },
    );

    it.each([
      ['an unknown type keyword', { type: 'number-ish' }],
      ['a non-object schema', 'just a string'],
      ['an array', [{ type: 'string' }]],
      ['required that is not a list', { type: 'object', required: 'amount' }],
      ['a broken $ref', { $ref: '#/definitions/missing' }],
    ])('refuses %s as a schema with BAD_USER_INPUT and stores nothing', async (_what, schema) => {
      const before = await t.dispatch.db.prisma.eventType.count();
      await expectError(t.client, 'BAD_USER_INPUT', CREATE_EVENT_TYPE, {
        input: { appId, name: 'bad.schema', schema },
      });
      expect(await t.dispatch.db.prisma.eventType.count()).toBe(before);
    });

    it('refuses a duplicate name with BAD_USER_INPUT; the same name in another app is fine', async () => {
      await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'dup.name' } });
      await expectError(t.client, 'BAD_USER_INPUT', CREATE_EVENT_TYPE, { input: { appId, name: 'dup.name' } });
      const other = (await t.client.request(CreateAppDocument, { input: { name: 'Other' } })).createApp.id;
      const { createEventType } = await t.client.request(CreateEventTypeDocument, {
        input: { appId: other, name: 'dup.name' },
      });
      expect(createEventType.name).toBe('dup.name');
    });

    it('concurrent creations of one name make exactly one event type', async () => {
      const results = await Promise.all(
        Array.from({ length: 6 }, () => t.client.raw(CREATE_EVENT_TYPE, { input: { appId, name: 'racing.type' } })),
      );
      expect(results.filter((r) => !r.errors)).toHaveLength(1);
      for (const r of results.filter((r) => r.errors)) expect(r.errors![0]!.extensions?.code).toBe('BAD_USER_INPUT');
      expect(await t.dispatch.db.prisma.eventType.count({ where: { appId, name: 'racing.type' } })).toBe(1);
    });

    it('answers NOT_FOUND for an unknown app', async () => {
      await expectError(t.client, 'NOT_FOUND', CREATE_EVENT_TYPE, {
        input: { appId: 'app_00000000000000000000000000', name: 'a.b' },
      });
    });
  });

  describe('archiveEventType', () => {
    it('archives; archived types are hidden from App.eventTypes unless includeArchived; archiving twice is harmless', async () => {
      await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'to.archive' } });
      const { archiveEventType } = await t.client.request(ArchiveEventTypeDocument, {
        input: { appId, name: 'to.archive' },
      });
      expect(archiveEventType.archived).toBe(true);
      expect(Date.parse(archiveEventType.archivedAt as string)).toBeGreaterThan(Date.now() - 60_000);
      const again = await t.client.request(ArchiveEventTypeDocument, { input: { appId, name: 'to.archive' } });
      expect(again.archiveEventType.archivedAt).toBe(archiveEventType.archivedAt);

      const listed = await t.client.raw<{
        app: { active: { name: string }[]; all: { name: string; archived: boolean }[] };
      }>(
        `query ($id: ID!) { app(id: $id) { active: eventTypes { name } all: eventTypes(includeArchived: true) { name archived } } }`,
        { id: appId },
      );
      const active = listed.data!.app.active.map((e) => e.name);
      expect(active).not.toContain('to.archive');
      expect(active).toContain('invoice.paid');
      expect(active).toEqual([...active].sort());
      expect(listed.data!.app.all).toContainEqual({ name: 'to.archive', archived: true });
    });

    it('creating an archived name again restores it with the new description and schema', async () => {
      await t.client.request(CreateEventTypeDocument, {
        input: { appId, name: 'revived', description: 'old', schema: { type: 'object' } },
      });
      await t.client.request(ArchiveEventTypeDocument, { input: { appId, name: 'revived' } });
      const { createEventType } = await t.client.request(CreateEventTypeDocument, {
        input: { appId, name: 'revived', description: 'new' },
      });
      expect(createEventType).toMatchObject({ description: 'new', schema: null, archived: false });
      expect(await t.dispatch.db.prisma.eventType.count({ where: { appId, name: 'revived' } })).toBe(1);
    });

    it('answers UNKNOWN_EVENT_TYPE for a name the app does not have, NOT_FOUND for an unknown app', async () => {
      await expectError(t.client, 'UNKNOWN_EVENT_TYPE', ARCHIVE_EVENT_TYPE, {
        input: { appId, name: 'never.created' },
      });
      await expectError(t.client, 'NOT_FOUND', ARCHIVE_EVENT_TYPE, {
        input: { appId: 'app_00000000000000000000000000', name: 'invoice.paid' },
      });
    });
  });
});
