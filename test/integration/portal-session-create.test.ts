import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument, CreatePortalSessionDocument, ViewerDocument } from '../../packages/client/src/index.ts';
import { hashToken } from '../../src/domain/ids.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { expectError } from '../support/graphql.ts';

const CREATE = `mutation ($input: CreatePortalSessionInput!) { createPortalSession(input: $input) { url token expiresAt } }`;
const PUBLIC_URL = 'https://hooks.example.com/base';

describe('createPortalSession', () => {
  let t: TestDispatch;
  let appId: string;
  beforeAll(async () => {
    t = await startTestDispatch({ PUBLIC_URL: `${PUBLIC_URL}/`, DISPATCH_ROLE: 'api' });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Portal' } })).createApp.id;
  });
  afterAll(async () => t.stop());

  // biome-ignore lint/suspicious/noTemplateCurlyInString: the name quotes the setting, not a template
  it('answers ${PUBLIC_URL}/portal#token=dpt_…, expiring in an hour by default; only the hash is stored; the token works', async () => {
    const started = Date.now();
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_1' },
    });
    expect(createPortalSession.token).toMatch(/^dpt_[A-Za-z0-9_-]{43}$/);
    expect(createPortalSession.url).toBe(`${PUBLIC_URL}/portal#token=${createPortalSession.token}`);
    expect(new URL(createPortalSession.url).search).toBe('');
    const expiresAt = Date.parse(createPortalSession.expiresAt as string);
    expect(expiresAt).toBeGreaterThanOrEqual(started + 3_600_000 - 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);

    const row = await t.dispatch.db.prisma.portalSession.findFirstOrThrow({
      where: { appId },
      include: { recipient: true },
    });
    expect(row.tokenHash).toBe(hashToken(createPortalSession.token));
    expect(JSON.stringify(row)).not.toContain(createPortalSession.token.slice(4));
    expect(row.recipient.uid).toBe('customer_1');

    const { viewer } = await t.clientFor(createPortalSession.token).request(ViewerDocument);
    expect(viewer).toMatchObject({ kind: 'PORTAL', app: { id: appId }, recipient: { recipientId: 'customer_1' } });
  });

  it.each([1, 604_800])('accepts expiresInSeconds %i', async (expiresInSeconds) => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'c2', expiresInSeconds },
    });
    const expiresIn = Date.parse(createPortalSession.expiresAt as string) - Date.now();
    expect(expiresIn).toBeGreaterThan(expiresInSeconds * 1000 - 2000);
    expect(expiresIn).toBeLessThanOrEqual(expiresInSeconds * 1000);
  });

  it.each([0, -1, 604_801, 365 * 86_400])(
    'refuses expiresInSeconds %i with BAD_USER_INPUT and stores nothing',
    async (expiresInSeconds) => {
      const before = await t.dispatch.db.prisma.portalSession.count();
      await expectError(t.client, 'BAD_USER_INPUT', CREATE, { input: { appId, recipientId: 'c3', expiresInSeconds } });
      expect(await t.dispatch.db.prisma.portalSession.count()).toBe(before);
      expect(await t.dispatch.db.prisma.recipient.count({ where: { uid: 'c3' } })).toBe(0);
    },
  );

  it('refuses a malformed recipient id (BAD_USER_INPUT) and an unknown app (NOT_FOUND)', async () => {
    await expectError(t.client, 'BAD_USER_INPUT', CREATE, { input: { appId, recipientId: 'has space' } });
    await expectError(t.client, 'NOT_FOUND', CREATE, {
      input: { appId: 'app_00000000000000000000000000', recipientId: 'c' },
    });
  });

  it('a portal token may not create portal sessions (FORBIDDEN)', async () => {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'customer_1' },
    });
    await expectError(t.clientFor(createPortalSession.token), 'FORBIDDEN', CREATE, {
      input: { appId, recipientId: 'customer_1' },
    });
  });
});

describe('createPortalSession without PUBLIC_URL', () => {
  let t: TestDispatch;
  beforeAll(async () => {
    // The harness listens on PORT=0: the system picks the port.
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
  });
  afterAll(async () => t.stop());

  it('builds the URL on the port the server actually listens on', async () => {
    const appId = (await t.client.request(CreateAppDocument, { input: { name: 'Portal' } })).createApp.id;
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId: 'c' },
    });
    const port = new URL(t.url).port;
    expect(port).not.toBe('0');
    expect(createPortalSession.url).toBe(`http://localhost:${port}/portal#token=${createPortalSession.token}`);
  });
});
