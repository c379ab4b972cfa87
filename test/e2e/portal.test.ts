import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import nacl from 'tweetnacl';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
  ResendMessageDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { LIVE_APPLICATION_NAME } from '../../src/live/pg-bus.ts';
import { DEFAULT_RETRY_SCHEDULE } from '../../src/webhooks/retry.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

const SCREENSHOTS = path.resolve('test-results/portal');
const PHONE = { width: 375, height: 812 };
const DESKTOP = { width: 1280, height: 900 };

describe('the portal SPA in a real browser', () => {
  let t: TestDispatch;
  let context: BrowserContext;
  let userDataDir: string;
  let receiver: Receiver;
  let appId: string;

  beforeAll(async () => {
    // Test the SPA as it is in the tree, not an older build.
    await build({ configFile: path.resolve('portal-app/vite.config.ts'), logLevel: 'warn' });
    await mkdir(SCREENSHOTS, { recursive: true });
    [t, receiver] = await Promise.all([startTestDispatch(), startReceiver([], { status: 200, body: 'thanks' })]);
    userDataDir = await mkdtemp(path.join(tmpdir(), 'dispatch-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: DESKTOP,
    });
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Billing' } });
    appId = createApp.id;
    await t.client.request(CreateEventTypeDocument, {
      input: { appId, name: 'invoice.paid', description: 'An invoice was paid in full.' },
    });
    await t.client.request(CreateEventTypeDocument, {
      input: { appId, name: 'invoice.voided', description: 'An invoice was voided.' },
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await Promise.all([t?.stop(), receiver?.close()]);
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  /** The portal URL of a session, on the test server's actual port. */
  async function portalUrl(recipientId: string, expiresInSeconds?: number) {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId, expiresInSeconds },
    });
    const url = new URL(createPortalSession.url);
    expect(url.pathname).toBe('/portal');
    expect(url.search).toBe('');
    expect(url.hash).toBe(`#token=${createPortalSession.token}`);
    return { url: `${t.url}${url.pathname}${url.hash}`, token: createPortalSession.token };
  }

  async function newPage(viewport = DESKTOP): Promise<Page> {
    const page = await context.newPage();
    await page.setViewportSize(viewport);
    return page;
  }

  /** A dashboard tab already signed in with `apiKey` (the sign-in form has its own test), showing `hash`. */
  async function dashboardPage(apiKey: string, hash: string): Promise<Page> {
    const page = await newPage();
    // Any other route first: going to the same hash again would not route.
    await page.goto(`${t.url}/portal#/`);
    await page.evaluate((key) => sessionStorage.setItem('dispatch.apiKey', key), apiKey);
    await page.goto(`${t.url}/portal${hash}`);
    return page;
  }

  /** Runs `work` over `items`, a few at a time, so setting up many objects stays quick without flooding the server. */
  async function inBatches<T>(items: T[], work: (item: T) => Promise<unknown>, size = 10) {
    for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
  }

  it('serves the SPA at /portal with its content types, cache headers and frame-ancestors CSP', async () => {
    const index = await fetch(`${t.url}/portal`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    expect(index.headers.get('content-security-policy')).toContain("frame-ancestors 'self'");
    const html = await index.text();
    const script = /src="(\/portal\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script).toBeDefined();
    const asset = await fetch(`${t.url}${script}`);
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(asset.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect((await fetch(`${t.url}/portal/assets/missing-abc.js`)).status).toBe(404);
    expect((await fetch(`${t.url}/portal/..%2f..%2fpackage.json`)).status).toBe(404);
    const dashboard = await fetch(`${t.url}/dashboard`, { redirect: 'manual' });
    expect(dashboard.headers.get('location')).toBe('/portal/#/dashboard');
    // The root leads a browser to the dashboard too, not to a JSON 404.
    const root = await fetch(`${t.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/portal/#/dashboard');
  });

  it('a customer opens a portal link, adds an endpoint, sees a message delivered to it, and resends it', async () => {
    const page = await newPage();
    const { url, token } = await portalUrl('customer_42');
    await page.goto(url);
    await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
    // The token left the address bar and lives in this tab's sessionStorage.
    expect(page.url()).not.toContain(token);
    expect(page.url()).toMatch(/\/portal#\/endpoints$/);
    expect(await page.evaluate(() => sessionStorage.getItem('dispatch.portalToken'))).toBe(token);
    await page.getByText('No endpoints yet').waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}/portal-empty-desktop.png` });

    await page.getByRole('link', { name: 'Add your first endpoint' }).click();
    await page.getByLabel('Endpoint URL').fill(receiver.url);
    await page.getByLabel('Description').fill('Production receiver');
    await page.getByText('An invoice was paid in full.').click();
    await page.getByRole('button', { name: 'Add header' }).click();
    await page.getByLabel('Header name').fill('X-Customer');
    await page.getByLabel('Header value').fill('forty-two');
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    await page.getByRole('heading', { name: receiver.url }).waitFor();
    const endpoint = await t.dispatch.db.prisma.endpoint.findFirstOrThrow({ where: { url: receiver.url } });
    expect(endpoint).toMatchObject({
      description: 'Production receiver',
      eventTypes: ['invoice.paid'],
      headers: { 'x-customer': 'forty-two' },
      disabled: false,
    });

    await page.getByRole('button', { name: 'Reveal' }).click();
    await expect.poll(() => page.getByTestId('secret').textContent()).toMatch(/^whsec_[A-Za-z0-9+/=]{32}$/);

    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_42', eventType: 'invoice.paid', data: { invoice: 'inv_1', amount: 4200 } },
    });
    await page.getByRole('link', { name: 'Messages' }).click();
    await page.locator('.message').first().waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}/portal-messages-desktop.png` });
    await page.locator('.message a').first().click();
    await page.getByText('"amount": 4200').waitFor();
    expect(sendMessage.message.deliveries.nodes).toHaveLength(1);
    // The delivery engine sends it, signed, with the custom header; the page follows the live feed.
    await receiver.nth(1);
    expect(receiver.received[0]!.headers).toMatchObject({
      'x-customer': 'forty-two',
      'webhook-id': sendMessage.message.messageId,
    });
    expect(JSON.parse(receiver.received[0]!.body)).toMatchObject({
      type: 'invoice.paid',
      data: { invoice: 'inv_1', amount: 4200 },
    });
    const delivery = page.getByTestId('delivery');
    await expect.poll(() => delivery.textContent()).toContain(receiver.url);
    const attempts = page.getByTestId('attempt');
    await expect.poll(() => attempts.first().textContent()).toMatch(/succeeded\s*HTTP 200.*scheduled/s);
    expect(await delivery.locator('.badge').first().textContent()).toBe('succeeded');
    await page.getByText('Response body').first().click();
    await page.getByText('thanks').waitFor();

    // Resend: a manual attempt now, which the receiver gets and the log shows.
    await page.getByRole('button', { name: 'Resend', exact: true }).click();
    await page.getByText('Resent: a new attempt is on its way.').waitFor();
    await receiver.nth(2);
    await expect.poll(() => attempts.count()).toBe(2);
    await expect.poll(() => attempts.first().textContent()).toMatch(/succeeded\s*HTTP 200.*manual/s);
    await page.screenshot({ path: `${SCREENSHOTS}/portal-message-desktop.png`, fullPage: true });

    await page.setViewportSize(PHONE);
    await page.screenshot({ path: `${SCREENSHOTS}/portal-message-phone.png`, fullPage: true });
    // Nothing is wider than a phone's screen.
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.getByRole('link', { name: 'Endpoints' }).click();
    await page.locator('.endpoint').first().waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.screenshot({ path: `${SCREENSHOTS}/portal-endpoints-phone.png`, fullPage: true });
    await page.close();
  }, 60_000);

  it('an endpoint signing with a key pair (v1a) shows its public key, never the private key, and the new one once rotated', async () => {
    const created = await t.client.raw(
      'mutation ($input: CreateEndpointInput!) { createEndpoint(input: $input) { id publicKey } }',
      { input: { appId, recipientId: 'customer_ed', url: receiver.url, signatureScheme: 'ED25519' } },
    );
    expect(created.errors).toBeUndefined();
    const endpoint = (created.data as { createEndpoint: { id: string; publicKey: string } }).createEndpoint;
    const page = await newPage();
    page.on('dialog', (dialog) => void dialog.accept());
    await page.goto((await portalUrl('customer_ed')).url);
    await page.locator('.endpoint a').first().click();
    await page.getByRole('heading', { name: 'Public key' }).waitFor();
    expect(await page.getByTestId('public-key').textContent()).toBe(endpoint.publicKey);
    // Nothing to reveal: no secret field, no private key anywhere in the page.
    expect(await page.getByRole('button', { name: 'Reveal' }).count()).toBe(0);
    expect(await page.getByTestId('secret').count()).toBe(0);
    expect(await page.content()).not.toContain('whsk_');
    await page.screenshot({ path: `${SCREENSHOTS}/portal-endpoint-public-key-desktop.png` });

    await page.getByRole('button', { name: 'Rotate key pair' }).click();
    await page.getByText('New key pair made.').waitFor();
    const [, newest] = await t.dispatch.db.prisma.endpointSecret.findMany({
      where: { endpointId: endpoint.id },
      orderBy: { id: 'asc' },
    });
    expect(newest!.publicKey).not.toBe(endpoint.publicKey);
    await expect.poll(() => page.getByTestId('public-key').textContent()).toBe(newest!.publicKey);
    expect(await page.content()).not.toContain('whsk_');

    // What the page shows is what verifies the webhooks: both keys sign during the grace period.
    const before = receiver.received.length;
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_ed', eventType: 'invoice.paid', data: { invoice: 'inv_ed' } },
    });
    await receiver.nth(before + 1);
    const got = receiver.received[before]!;
    const signed = Buffer.from(`${got.headers['webhook-id']}.${got.headers['webhook-timestamp']}.${got.body}`);
    const signatures = String(got.headers['webhook-signature'])
      .split(' ')
      .map((part) => part.split(','));
    expect(signatures.map(([version]) => version)).toEqual(['v1a', 'v1a']);
    for (const key of [endpoint.publicKey, newest!.publicKey!]) {
      const raw = Buffer.from(key.slice('whpk_'.length), 'base64');
      expect(signatures.some(([, sig]) => nacl.sign.detached.verify(signed, Buffer.from(sig!, 'base64'), raw))).toBe(
        true,
      );
    }
    await page.close();
  });

  it('the live feed shows an attempt of a new message as it happens', async () => {
    const page = await newPage();
    await page.goto((await portalUrl('customer_42')).url);
    await page.getByRole('link', { name: 'Live' }).click();
    await page.getByText('● live').waitFor();
    const before = receiver.received.length;
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_42', eventType: 'invoice.paid', data: { invoice: 'inv_2' } },
    });
    await receiver.nth(before + 1);
    const live = page.getByTestId('live-attempt');
    await expect.poll(() => live.first().textContent()).toMatch(/invoice\.paid\s*succeeded.*HTTP 200/s);
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: `${SCREENSHOTS}/portal-live-phone.png`, fullPage: true });

    // The server's feed loses its LISTEN connection: nothing is lost (the feed reads its event log), so the
    // page carries on, with no notice, and shows the attempt of a message sent meanwhile.
    await t.dispatch.db.pool.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
      [LIVE_APPLICATION_NAME],
    );
    const shown = await live.count();
    const meanwhile = receiver.received.length;
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_42', eventType: 'invoice.paid', data: { invoice: 'inv_3' } },
    });
    await receiver.nth(meanwhile + 1);
    await expect.poll(() => live.count()).toBe(shown + 1);
    await expect.poll(() => live.first().textContent()).toMatch(/invoice\.paid\s*succeeded.*HTTP 200/s);
    expect(await page.getByTestId('feed-interrupted').count()).toBe(0);
    await page.getByText('● live').waitFor();
    await page.close();
  });

  it('filters the message log by event type', async () => {
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_7', eventType: 'invoice.paid', data: { n: 1 } },
    });
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'customer_7', eventType: 'invoice.voided', data: { n: 2 } },
    });
    const page = await newPage();
    await page.goto((await portalUrl('customer_7')).url);
    await page.getByRole('link', { name: 'Messages' }).click();
    await expect.poll(() => page.locator('.message').count()).toBe(2);
    await page.getByLabel('Event type').selectOption('invoice.voided');
    await page.getByRole('button', { name: 'Filter' }).click();
    await expect.poll(() => page.locator('.message').count()).toBe(1);
    expect(await page.locator('.message code').textContent()).toBe('invoice.voided');
    expect(page.url()).toContain('eventType=invoice.voided');
    await page.close();
  });

  it('an expired link shows the expired state, not an error', async () => {
    const { url } = await portalUrl('customer_9');
    await t.client.raw('mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }', {
      input: { appId, recipientId: 'customer_9' },
    });
    const page = await newPage(PHONE);
    await page.goto(url);
    await page.getByRole('heading', { name: 'This link has expired' }).waitFor();
    await page.screenshot({ path: `${SCREENSHOTS}/portal-expired-phone.png` });
    await page.close();
  });

  it('an operator signs in to the dashboard with an API key, sees the apps and makes a portal link', async () => {
    const page = await newPage();
    await page.goto(`${t.url}/dashboard`);
    await page.getByRole('heading', { name: 'Operator sign-in' }).waitFor();
    await page.getByLabel('API key').fill('dk_not_a_real_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('That API key is not valid.').waitFor();
    await page.getByLabel('API key').fill(t.apiKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: /Billing/ }).waitFor();
    expect(page.url()).not.toContain(t.apiKey);
    expect(await page.evaluate(() => sessionStorage.getItem('dispatch.apiKey'))).toBe(t.apiKey);
    await page.screenshot({ path: `${SCREENSHOTS}/dashboard-apps-desktop.png` });

    await page.getByRole('link', { name: /Billing/ }).click();
    await page.getByText('An invoice was paid in full.').waitFor();
    await page.locator('.recipient', { hasText: 'customer_42' }).getByRole('button', { name: 'Portal link' }).click();
    const link = await page.getByLabel('Portal link', { exact: true }).inputValue();
    expect(link).toMatch(/\/portal#token=dpt_[A-Za-z0-9_-]{43}$/);
    await page.screenshot({ path: `${SCREENSHOTS}/dashboard-app-desktop.png`, fullPage: true });
    await page.close();
  }, 60_000);

  it("an operator edits an app's name, retry schedule and attempt timeout; the API's BAD_USER_INPUT shows beside the form", async () => {
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Retries' } });
    const readBack = async () => (await t.client.request(AppDocument, { id: createApp.id })).app!;
    const page = await dashboardPage(t.apiKey, `#/dashboard/apps/${createApp.id}`);
    const form = page.getByRole('form', { name: 'App settings' });
    const schedule = form.getByLabel('Retry schedule');
    const timeout = form.getByLabel('Attempt timeout');
    const save = form.getByRole('button', { name: 'Save settings' });
    // An app without its own schedule shows the default one.
    await expect.poll(() => schedule.inputValue()).toBe(DEFAULT_RETRY_SCHEDULE.join(', '));
    expect(await timeout.inputValue()).toBe('15000');

    // The domain's rule and its message, not one of the SPA's.
    await schedule.fill('5, 0');
    await save.click();
    const alert = form.getByRole('alert');
    await expect
      .poll(() => alert.textContent())
      .toMatch(/^retrySchedule\[1\] must be a whole number of seconds from 1 to \d+/);
    await page.screenshot({ path: `${SCREENSHOTS}/dashboard-settings-error-desktop.png` });
    await timeout.fill('99');
    await schedule.fill('5, 300');
    await save.click();
    await expect.poll(() => alert.textContent()).toMatch(/^attemptTimeoutMs must be an integer from 100 to 60000/);
    // What is not a number at all never reaches the API.
    await schedule.fill('5, soon');
    await save.click();
    await expect.poll(() => alert.textContent()).toBe('"soon" is not a whole number of seconds.');
    expect(await readBack()).toMatchObject({
      name: 'Retries',
      retrySchedule: DEFAULT_RETRY_SCHEDULE,
      attemptTimeoutMs: 15_000,
    });

    await form.getByLabel('Name').fill('Retries v2');
    await schedule.fill('10, 60,600');
    await timeout.fill('5000');
    await save.click();
    await form.getByText('Settings saved.').waitFor();
    expect(await readBack()).toMatchObject({
      name: 'Retries v2',
      retrySchedule: [10, 60, 600],
      attemptTimeoutMs: 5000,
    });
    // The view shows what was saved.
    await page.getByRole('heading', { name: 'Retries v2' }).waitFor();
    await page.getByText('retries after 10, 60, 600 s · timeout 5000 ms').waitFor();
    expect(await schedule.inputValue()).toBe('10, 60, 600');

    // Empty restores the defaults; a later edit of the name alone leaves the schedule as the default, not a copy of it.
    await schedule.fill('');
    await timeout.fill('');
    await save.click();
    await expect.poll(readBack).toMatchObject({ retrySchedule: DEFAULT_RETRY_SCHEDULE, attemptTimeoutMs: 15_000 });
    await expect.poll(() => schedule.inputValue()).toBe(DEFAULT_RETRY_SCHEDULE.join(', '));
    await form.getByLabel('Name').fill('Retries v3');
    await save.click();
    await page.getByRole('heading', { name: 'Retries v3' }).waitFor();
    expect(await t.dispatch.db.prisma.app.findUniqueOrThrow({ where: { id: createApp.id } })).toMatchObject({
      name: 'Retries v3',
      retrySchedule: [],
      attemptTimeoutMs: null,
    });
    await page.close();
  }, 60_000);

  it("the dashboard pages through more than one page of recipients, of a recipient's endpoints and of apps", async () => {
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Many recipients' } });
    const ids = Array.from({ length: 105 }, (_, i) => `tenant_${String(i).padStart(3, '0')}`);
    await inBatches(ids, (recipientId) =>
      t.client.request(CreatePortalSessionDocument, { input: { appId: createApp.id, recipientId } }),
    );
    await inBatches(
      Array.from({ length: 21 }, (_, i) => i),
      (i) =>
        t.client.request(CreateEndpointDocument, {
          input: { appId: createApp.id, recipientId: 'tenant_000', url: `${receiver.url}/${i}` },
        }),
    );

    const page = await dashboardPage(t.apiKey, `#/dashboard/apps/${createApp.id}`);
    const rows = page.locator('.recipient');
    const more = page.getByRole('button', { name: 'Load more', exact: true });
    await expect.poll(() => rows.count()).toBe(50);
    await more.click();
    await expect.poll(() => rows.count()).toBe(100);
    await more.click();
    await expect.poll(() => rows.count()).toBe(105);
    expect(await more.count()).toBe(0);
    // Every recipient, each once: the pages follow one another without gaps or repeats.
    const shown = await rows.locator('strong').allTextContents();
    expect(new Set(shown).size).toBe(105);
    expect(shown.toSorted()).toEqual(ids);

    const tenant = rows.filter({ has: page.locator('strong', { hasText: /^tenant_000$/ }) });
    const endpoints = tenant.locator('.sub > li');
    expect(await endpoints.count()).toBe(20);
    await tenant.getByRole('button', { name: 'More endpoints' }).click();
    await expect.poll(() => endpoints.count()).toBe(21);
    expect(new Set(await endpoints.locator('.url').allTextContents()).size).toBe(21);
    expect(await tenant.getByRole('button', { name: 'More endpoints' }).count()).toBe(0);
    await page.close();

    // Apps page by 50: another workspace with 51.
    const other = await t.newWorkspace();
    await inBatches(
      Array.from({ length: 51 }, (_, i) => i),
      (i) => other.client.request(CreateAppDocument, { input: { name: `App ${i}` } }),
    );
    const appsPage = await dashboardPage(other.apiKey, '#/dashboard');
    const cards = appsPage.locator('.card');
    await expect.poll(() => cards.count()).toBe(50);
    await appsPage.getByRole('button', { name: 'More apps' }).click();
    await expect.poll(() => cards.count()).toBe(51);
    expect(new Set(await cards.locator('strong').allTextContents()).size).toBe(51);
    await appsPage.close();
  }, 60_000);

  it("the message page pages through a delivery's older attempts and a message's deliveries, and a live reread keeps the pages loaded", async () => {
    const prisma = t.dispatch.db.prisma;
    /** Resolves once the delivery has `count` attempts, all finished. */
    const attemptsDone = (deliveryId: string, count: number) =>
      expect
        .poll(() => prisma.attempt.count({ where: { deliveryId, finishedAt: { not: null } } }), { timeout: 20_000 })
        .toBe(count);
    const shownIds = (locator: ReturnType<Page['getByTestId']>) =>
      locator.evaluateAll((els) => els.map((el) => el.getAttribute('data-id')));

    // One delivery with 23 attempts (the scheduled one and 22 resends): two pages of 20.
    await t.client.request(CreateEndpointDocument, {
      input: { appId, recipientId: 'pager', url: `${receiver.url}/pager` },
    });
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'pager', eventType: 'invoice.paid', data: { n: 1 } },
    });
    const message = sendMessage.message;
    const deliveryId = message.deliveries.nodes[0]!.id;
    await attemptsDone(deliveryId, 1);
    for (let i = 0; i < 22; i++)
      await t.client.request(ResendMessageDocument, { input: { appId, messageId: message.id } });
    await attemptsDone(deliveryId, 23);

    const page = await newPage();
    await page.goto((await portalUrl('pager')).url);
    await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
    await page.goto(`${t.url}/portal#/messages/${message.id}`);
    const attempts = page.getByTestId('attempt');
    await expect.poll(() => attempts.count()).toBe(20);
    await page.getByRole('button', { name: 'Older attempts' }).click();
    await expect.poll(() => attempts.count()).toBe(23);
    expect(await page.getByRole('button', { name: 'Older attempts' }).count()).toBe(0);
    const all = await prisma.attempt.findMany({ where: { deliveryId }, orderBy: { id: 'desc' }, select: { id: true } });
    // Newest first, each once, none missing.
    expect(await shownIds(attempts)).toEqual(all.map((a) => a.id));

    // A new attempt comes through the live feed: the reread shows it on top and keeps the older page.
    await t.client.request(ResendMessageDocument, { input: { appId, messageId: message.id } });
    await attemptsDone(deliveryId, 24);
    const now = await prisma.attempt.findMany({ where: { deliveryId }, orderBy: { id: 'desc' }, select: { id: true } });
    await expect.poll(() => shownIds(attempts)).toEqual(now.map((a) => a.id));
    await page.close();

    // 105 endpoints of one recipient: a message with 105 deliveries, in pages of 50, more than a reread's largest page (100).
    await inBatches(
      Array.from({ length: 105 }, (_, i) => i),
      (i) =>
        t.client.request(CreateEndpointDocument, {
          input: { appId, recipientId: 'fanout', url: `${receiver.url}/fanout/${i}` },
        }),
    );
    const wide = (
      await t.client.request(SendMessageDocument, {
        input: { appId, recipientId: 'fanout', eventType: 'invoice.paid', data: { n: 2 } },
      })
    ).sendMessage.message;
    const ids = (
      await prisma.delivery.findMany({ where: { messageId: wide.id }, orderBy: { id: 'asc' }, select: { id: true } })
    ).map((d) => d.id);
    expect(ids).toHaveLength(105);
    // Every first attempt has ended, so what the page shows changes only by the resends below.
    await expect
      .poll(() => prisma.attempt.count({ where: { deliveryId: { in: ids }, finishedAt: { not: null } } }), {
        timeout: 20_000,
      })
      .toBe(105);
    const detail = await newPage();
    await detail.goto((await portalUrl('fanout')).url);
    await detail.getByRole('heading', { name: 'Endpoints' }).waitFor();
    await detail.goto(`${t.url}/portal#/messages/${wide.id}`);
    const deliveries = detail.getByTestId('delivery');
    const moreDeliveries = detail.getByRole('button', { name: 'More deliveries' });
    await expect.poll(() => deliveries.count()).toBe(50);
    await moreDeliveries.click();
    await expect.poll(() => deliveries.count()).toBe(100);
    await moreDeliveries.click();
    await expect.poll(() => deliveries.count()).toBe(105);
    expect(await moreDeliveries.count()).toBe(0);
    expect(await shownIds(deliveries)).toEqual(ids);
    // A resend to the 51st and to the last delivery's endpoint rereads the message: still 105 deliveries, each once, and
    // both show their new manual attempt, the last one too though it is beyond the first 100.
    const resendTo = async (deliveryId: string) => {
      const { endpointId } = await prisma.delivery.findUniqueOrThrow({
        where: { id: deliveryId },
        select: { endpointId: true },
      });
      await t.client.request(ResendMessageDocument, { input: { appId, messageId: wide.id, endpointId } });
      await attemptsDone(deliveryId, 2);
      return (
        await prisma.attempt.findMany({ where: { deliveryId }, orderBy: { id: 'desc' }, select: { id: true } })
      ).map((a) => a.id);
    };
    const [middle, last] = await Promise.all([resendTo(ids[50]!), resendTo(ids[104]!)]);
    await expect.poll(() => shownIds(deliveries.nth(50).getByTestId('attempt'))).toEqual(middle);
    await expect.poll(() => shownIds(deliveries.last().getByTestId('attempt'))).toEqual(last);
    expect(await deliveries.last().textContent()).toMatch(/succeeded.*2 attempt\(s\)/s);
    expect(await shownIds(deliveries)).toEqual(ids);
    await detail.close();
  }, 90_000);
});
