import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArchiveEventTypeDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  type CreateEndpointInput,
  CreateEventTypeDocument,
  DeleteEndpointDocument,
  EndpointDocument,
  RecipientDocument,
  RotateEndpointSecretDocument,
  UpdateEndpointDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

const CREATE = `mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id url } }`;
const UPDATE = `mutation ($input: UpdateEndpointInput!) { updateEndpoint(input: $input) { id url } }`;
const ROTATE = `mutation ($input: RotateEndpointSecretInput!) { rotateEndpointSecret(input: $input) { id secret } }`;
const DELETE = `mutation ($input: DeleteEndpointInput!) { deleteEndpoint(input: $input) { id } }`;

/** `whsec_` + standard base64 of exactly 24 bytes. */
function expectSecret(secret: string) {
  expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
  expect(Buffer.from(secret.slice('whsec_'.length), 'base64')).toHaveLength(24);
}

describe('endpoints', () => {
  let t: TestDispatch;
  let appId: string;
  const secretRows = (endpointId: string) =>
    t.dispatch.db.prisma.endpointSecret.findMany({ where: { endpointId }, orderBy: { id: 'asc' } });

  beforeAll(async () => {
    // API role only: deliveries stay as sendMessage left them, and nothing is sent to the example.com endpoints.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Endpoints' } })).createApp.id;
    for (const name of ['invoice.paid', 'invoice.voided', 'old.type']) {
      await t.client.request(CreateEventTypeDocument, { input: { appId, name } });
    }
    await t.client.request(ArchiveEventTypeDocument, { input: { appId, name: 'old.type' } });
  });
  afterAll(async () => t.stop());

  const create = (input: Partial<CreateEndpointInput> = {}) =>
    t.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'customer_1', url: 'https://example.com/hooks', ...input },
    });

  describe('createEndpoint', () => {
    it('stores the endpoint with a fresh secret and creates its recipient on first use', async () => {
      expect(await t.dispatch.db.prisma.recipient.count({ where: { appId, uid: 'new_customer' } })).toBe(0);
      const { createEndpoint } = await create({
        recipientId: 'new_customer',
        url: 'https://example.com/hooks?x=1',
        eventTypes: ['invoice.paid', 'invoice.paid'],
        description: 'production',
        headers: { 'X-Api-Key': 'abc', Authorization: 'Bearer t' },
      });
      expect(createEndpoint).toMatchObject({
        url: 'https://example.com/hooks?x=1',
        eventTypes: ['invoice.paid'],
        description: 'production',
        disabled: false,
        disabledReason: null,
        recipientId: 'new_customer',
        headers: { 'x-api-key': 'abc', authorization: 'Bearer t' },
      });
      expect(createEndpoint.id).toMatch(/^ep_/);
      expectSecret(createEndpoint.secret);
      const rows = await secretRows(createEndpoint.id);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ secret: createEndpoint.secret, expiresAt: null });

      const { recipient } = await t.client.request(RecipientDocument, { appId, recipientId: 'new_customer' });
      expect(recipient?.endpoints.nodes.map((e) => e.id)).toEqual([createEndpoint.id]);
    });

    it('every endpoint gets its own secret', async () => {
      const secrets = new Set<string>();
      for (let i = 0; i < 5; i++) secrets.add((await create()).createEndpoint.secret);
      expect(secrets.size).toBe(5);
    });

    it('may start disabled, with the reason recorded', async () => {
      const { createEndpoint } = await create({ disabled: true });
      expect(createEndpoint).toMatchObject({ disabled: true, disabledReason: 'disabled by user' });
    });

    it.each([
      ['ftp://example.com/hook'],
      ['file:///etc/passwd'],
      ['javascript:alert(1)'],
      ['example.com/hook'],
      ['not a url'],
      [''],
      ['https://user:password@example.com/hook'],
      ['a URL of 2100 characters', `https://example.com/${'a'.repeat(2100)}`],
    ])('refuses the URL %j with BAD_USER_INPUT and stores nothing', async (label, url = label) => {
      const before = await t.dispatch.db.prisma.endpoint.count();
      await expectError(t.client, 'BAD_USER_INPUT', CREATE, { input: { appId, recipientId: 'customer_1', url } });
      expect(await t.dispatch.db.prisma.endpoint.count()).toBe(before);
    });

    it('refuses a literal private address even where loopback is allowed', async () => {
      await expectError(t.client, 'UNSAFE_URL', CREATE, {
        input: { appId, recipientId: 'customer_1', url: 'http://10.0.0.8/hook' },
      });
      // This Dispatch allows 127.0.0.0/8 (test receivers live there).
      const { createEndpoint } = await create({ url: 'http://127.0.0.1:9/hook' });
      expect(createEndpoint.url).toBe('http://127.0.0.1:9/hook');
    });

    it('refuses filters naming unknown or archived event types with UNKNOWN_EVENT_TYPE, malformed names with BAD_USER_INPUT', async () => {
      const before = await t.dispatch.db.prisma.endpoint.count();
      const unknown = await expectError(t.client, 'UNKNOWN_EVENT_TYPE', CREATE, {
        input: {
          appId,
          recipientId: 'customer_1',
          url: 'https://example.com/',
          eventTypes: ['invoice.paid', 'no.such'],
        },
      });
      expect(unknown.errors![0]!.extensions).toMatchObject({ eventTypes: ['no.such'] });
      await expectError(t.client, 'UNKNOWN_EVENT_TYPE', CREATE, {
        input: { appId, recipientId: 'customer_1', url: 'https://example.com/', eventTypes: ['old.type'] },
      });
      await expectError(t.client, 'BAD_USER_INPUT', CREATE, {
        input: { appId, recipientId: 'customer_1', url: 'https://example.com/', eventTypes: ['not a name'] },
      });
      expect(await t.dispatch.db.prisma.endpoint.count()).toBe(before);
    });

    it.each([
      ['content-type', { 'Content-Type': 'text/plain' }],
      ['host', { Host: 'evil.example' }],
      ['webhook-signature', { 'webhook-signature': 'v1,forged' }],
      ['webhook-id', { 'Webhook-Id': 'x' }],
      ['any webhook-* header', { 'webhook-custom': 'x' }],
      ['content-length', { 'content-length': '1' }],
      ['transfer-encoding', { 'transfer-encoding': 'chunked' }],
      ['an invalid header name', { 'bad header': 'x' }],
      ['a non-string value', { 'x-count': 1 }],
      ['a value with CR/LF', { 'x-split': 'a\r\nx-injected: 1' }],
      ['the same name twice in different case', { 'X-Key': 'a', 'x-key': 'b' }],
      ['more than 20 headers', Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`x-h${i}`, 'v']))],
      ['an array', ['x-a', 'b']],
      ['a string', 'x-a: b'],
    ])('refuses custom headers with %s (BAD_USER_INPUT)', async (_what, headers) => {
      await expectError(t.client, 'BAD_USER_INPUT', CREATE, {
        input: { appId, recipientId: 'customer_1', url: 'https://example.com/', headers },
      });
    });

    it('answers NOT_FOUND for an unknown app and BAD_USER_INPUT for a malformed recipient id', async () => {
      await expectError(t.client, 'NOT_FOUND', CREATE, {
        input: { appId: 'app_00000000000000000000000000', recipientId: 'c', url: 'https://example.com/' },
      });
      await expectError(t.client, 'BAD_USER_INPUT', CREATE, {
        input: { appId, recipientId: 'has space', url: 'https://example.com/' },
      });
      await expectError(t.client, 'BAD_USER_INPUT', CREATE, {
        input: { appId, recipientId: '', url: 'https://example.com/' },
      });
    });
  });

  describe('updateEndpoint', () => {
    it('changes only what it is given and validates it like create', async () => {
      const { createEndpoint: ep } = await create({
        eventTypes: ['invoice.paid'],
        description: 'd',
        headers: { 'x-a': '1' },
      });
      const { updateEndpoint } = await t.client.request(UpdateEndpointDocument, {
        input: { id: ep.id, url: 'https://example.org/new' },
      });
      expect(updateEndpoint).toMatchObject({
        url: 'https://example.org/new',
        eventTypes: ['invoice.paid'],
        description: 'd',
        headers: { 'x-a': '1' },
      });

      const second = await t.client.request(UpdateEndpointDocument, {
        input: { id: ep.id, eventTypes: [], description: null, headers: { 'x-b': '2' } },
      });
      expect(second.updateEndpoint).toMatchObject({
        url: 'https://example.org/new',
        eventTypes: [],
        description: null,
        headers: { 'x-b': '2' },
      });

      await expectError(t.client, 'BAD_USER_INPUT', UPDATE, { input: { id: ep.id, url: 'gopher://example.com/' } });
      await expectError(t.client, 'UNSAFE_URL', UPDATE, { input: { id: ep.id, url: 'http://192.168.0.1/' } });
      await expectError(t.client, 'UNKNOWN_EVENT_TYPE', UPDATE, { input: { id: ep.id, eventTypes: ['no.such'] } });
      await expectError(t.client, 'BAD_USER_INPUT', UPDATE, {
        input: { id: ep.id, headers: { 'webhook-timestamp': '1' } },
      });
      const row = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id: ep.id } });
      expect(row).toMatchObject({ url: 'https://example.org/new', eventTypes: [], headers: { 'x-b': '2' } });
    });

    it('disabling records a reason; enabling clears the reason, the time and the failure clock', async () => {
      const { createEndpoint: ep } = await create();
      const disabled = await t.client.request(UpdateEndpointDocument, { input: { id: ep.id, disabled: true } });
      expect(disabled.updateEndpoint).toMatchObject({ disabled: true, disabledReason: 'disabled by user' });

      // As the delivery engine leaves an endpoint it disabled by itself.
      await t.dispatch.db.prisma.endpoint.update({
        where: { id: ep.id },
        data: { disabledReason: 'failing since 5 days', failingSince: new Date(Date.now() - 6 * 86_400_000) },
      });
      const enabled = await t.client.request(UpdateEndpointDocument, { input: { id: ep.id, disabled: false } });
      expect(enabled.updateEndpoint).toMatchObject({ disabled: false, disabledReason: null });
      const row = await t.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id: ep.id } });
      expect(row).toMatchObject({ disabled: false, disabledReason: null, disabledAt: null, failingSince: null });
    });

    it('answers NOT_FOUND for an unknown or malformed id', async () => {
      await expectError(t.client, 'NOT_FOUND', UPDATE, {
        input: { id: 'ep_00000000000000000000000000', url: 'https://example.com/' },
      });
      await expectError(t.client, 'NOT_FOUND', UPDATE, { input: { id: 'garbage', url: 'https://example.com/' } });
    });
  });

  describe('deleteEndpoint', () => {
    it('returns what was selected, removes the endpoint and its secrets; deleting again is NOT_FOUND', async () => {
      const { createEndpoint: ep } = await create({ description: 'doomed' });
      const deleted = await t.client.raw<{
        deleteEndpoint: { id: string; url: string; description: string; secret: string };
      }>(`mutation ($input: DeleteEndpointInput!) { deleteEndpoint(input: $input) { id url description secret } }`, {
        input: { id: ep.id },
      });
      expect(deleted.data?.deleteEndpoint).toEqual({
        id: ep.id,
        url: ep.url,
        description: 'doomed',
        secret: ep.secret,
      });
      expect((await t.client.request(EndpointDocument, { id: ep.id })).endpoint).toBeNull();
      expect(await secretRows(ep.id)).toEqual([]);
      await expectError(t.client, 'NOT_FOUND', DELETE, { input: { id: ep.id } });
    });

    it('typed client: deleteEndpoint answers the id', async () => {
      const { createEndpoint: ep } = await create();
      expect((await t.client.request(DeleteEndpointDocument, { input: { id: ep.id } })).deleteEndpoint.id).toBe(ep.id);
    });
  });

  describe('rotateEndpointSecret', () => {
    it('makes a new secret; the old one keeps signing for the grace period (default 24 h)', async () => {
      const { createEndpoint: ep } = await create();
      const before = Date.now();
      const { rotateEndpointSecret } = await t.client.request(RotateEndpointSecretDocument, { input: { id: ep.id } });
      const after = Date.now();
      expectSecret(rotateEndpointSecret.secret);
      expect(rotateEndpointSecret.secret).not.toBe(ep.secret);
      expect((await t.client.request(EndpointDocument, { id: ep.id })).endpoint?.secret).toBe(
        rotateEndpointSecret.secret,
      );

      const [old, current] = await secretRows(ep.id);
      expect(old!.secret).toBe(ep.secret);
      expect(old!.expiresAt!.getTime()).toBeGreaterThanOrEqual(before + 86_400_000 - 1000);
      expect(old!.expiresAt!.getTime()).toBeLessThanOrEqual(after + 86_400_000 + 1000);
      expect(current).toMatchObject({ secret: rotateEndpointSecret.secret, expiresAt: null });
    });

    it('a second rotation shortens, never lengthens, the grace of older secrets; 0 retires them now', async () => {
      const { createEndpoint: ep } = await create();
      await t.client.request(RotateEndpointSecretDocument, { input: { id: ep.id, gracePeriodSeconds: 60 } });
      await t.client.request(RotateEndpointSecretDocument, { input: { id: ep.id, gracePeriodSeconds: 7 * 86_400 } });
      let rows = await secretRows(ep.id);
      expect(rows).toHaveLength(3);
      expect(rows[0]!.expiresAt!.getTime()).toBeLessThanOrEqual(Date.now() + 61_000);
      expect(rows[1]!.expiresAt!.getTime()).toBeGreaterThan(Date.now() + 7 * 86_400_000 - 60_000);
      expect(rows[2]!.expiresAt).toBeNull();

      const now = Date.now();
      await t.client.request(RotateEndpointSecretDocument, { input: { id: ep.id, gracePeriodSeconds: 0 } });
      rows = await secretRows(ep.id);
      expect(rows).toHaveLength(4);
      for (const row of rows.slice(0, 3)) expect(row.expiresAt!.getTime()).toBeLessThanOrEqual(now + 1000);
      expect(rows[3]!.expiresAt).toBeNull();
    });

    it('concurrent rotations leave exactly one secret without expiry', async () => {
      const { createEndpoint: ep } = await create();
      await Promise.all(
        Array.from({ length: 5 }, () => t.client.request(RotateEndpointSecretDocument, { input: { id: ep.id } })),
      );
      const rows = await secretRows(ep.id);
      expect(rows).toHaveLength(6);
      expect(rows.filter((r) => r.expiresAt === null)).toHaveLength(1);
    });

    it.each([-1, 7 * 86_400 + 1])(
      'refuses gracePeriodSeconds %i with BAD_USER_INPUT and changes nothing',
      async (gracePeriodSeconds) => {
        const { createEndpoint: ep } = await create();
        await expectError(t.client, 'BAD_USER_INPUT', ROTATE, { input: { id: ep.id, gracePeriodSeconds } });
        expect(await secretRows(ep.id)).toHaveLength(1);
      },
    );

    it('answers NOT_FOUND for an unknown endpoint', async () => {
      await expectError(t.client, 'NOT_FOUND', ROTATE, { input: { id: 'ep_00000000000000000000000000' } });
    });
  });
});

describe('endpoint URLs where no network is allowed (the production default)', () => {
  let strict: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    strict = await startTestDispatch({ DISPATCH_ALLOW_NETWORKS: '', DISPATCH_ROLE: 'api' });
    appId = (await strict.client.request(CreateAppDocument, { input: { name: 'Strict' } })).createApp.id;
  });
  afterAll(async () => strict.stop());

  it.each([
    'http://127.0.0.1/hook',
    'http://127.1.2.3:8080/',
    'http://2130706433/',
    'http://0x7f.0.0.1/',
    'http://0.0.0.0/',
    'http://10.0.0.1/',
    'http://172.16.5.4/',
    'http://192.168.1.1/',
    'http://169.254.169.254/latest/meta-data/',
    'http://100.64.0.1/',
    'http://224.0.0.1/',
    'http://[::1]/',
    'http://[fe80::1]/',
    'http://[fc00::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:10.0.0.1]/',
    'http://localhost/',
    'http://LOCALHOST:3000/hook',
    'http://api.localhost/',
    'http://localhost./',
  ])('createEndpoint refuses %s with UNSAFE_URL and stores nothing', async (url) => {
    await expectError(strict.client, 'UNSAFE_URL', CREATE, { input: { appId, recipientId: 'c', url } });
    expect(await strict.dispatch.db.prisma.endpoint.count()).toBe(0);
  });

  it('accepts public addresses and host names (names are checked again on the resolved address at send time)', async () => {
    for (const url of ['https://example.com/hook', 'http://93.184.216.34/', 'https://[2606:4700::1111]/']) {
      const result = await strict.client.raw(CREATE, { input: { appId, recipientId: 'c', url } });
      expect(result.errors, url).toBeUndefined();
    }
  });

  it('updateEndpoint refuses an unsafe URL too and keeps the old one', async () => {
    const { createEndpoint } = await strict.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'c', url: 'https://example.com/keep' },
    });
    await expectError(strict.client, 'UNSAFE_URL', UPDATE, {
      input: { id: createEndpoint.id, url: 'http://[::1]:4000/' },
    });
    await expectError(strict.client, 'UNSAFE_URL', UPDATE, {
      input: { id: createEndpoint.id, url: 'http://localhost:4000/' },
    });
    const row = await strict.dispatch.db.prisma.endpoint.findUniqueOrThrow({ where: { id: createEndpoint.id } });
    expect(row.url).toBe('https://example.com/keep');
  });
});
