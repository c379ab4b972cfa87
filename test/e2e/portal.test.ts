import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument, CreateEventTypeDocument, CreatePortalSessionDocument, SendMessageDocument } from '../../src/client/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

const SCREENSHOTS = path.resolve('test-results/portal');
const PHONE = { width: 375, height: 812 };
const DESKTOP = { width: 1280, height: 900 };

/** A webhook receiver on 127.0.0.1 that records what it is sent. */
async function startReceiver() {
  const received: { headers: IncomingMessage['headers']; body: string }[] = [];
  const waiters: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('thanks');
      waiters.splice(0).forEach((w) => w());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhooks`,
    received,
    /** Resolves once `count` requests have arrived. */
    async until(count: number) {
      while (received.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('the portal SPA in a real browser', () => {
  let t: TestDispatch;
  let context: BrowserContext;
  let userDataDir: string;
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let appId: string;

  beforeAll(async () => {
    // Test the SPA as it is in the tree, not an older build.
    await build({ configFile: path.resolve('portal-app/vite.config.ts'), logLevel: 'warn' });
    await mkdir(SCREENSHOTS, { recursive: true });
    [t, receiver] = await Promise.all([startTestDispatch(), startReceiver()]);
    userDataDir = await mkdtemp(path.join(tmpdir(), 'dispatch-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: DESKTOP,
    });
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Billing' } });
    appId = createApp.id;
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.paid', description: 'An invoice was paid in full.' } });
    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.voided', description: 'An invoice was voided.' } });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await Promise.all([t?.stop(), receiver?.close()]);
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  /** The portal URL of a session, on the test server's actual port. */
  async function portalUrl(recipientId: string, expiresInSeconds?: number) {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, { input: { appId, recipientId, expiresInSeconds } });
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
    expect(endpoint).toMatchObject({ description: 'Production receiver', eventTypes: ['invoice.paid'], headers: { 'x-customer': 'forty-two' }, disabled: false });

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
    await receiver.until(1);
    expect(receiver.received[0]!.headers).toMatchObject({ 'x-customer': 'forty-two', 'webhook-id': sendMessage.message.messageId });
    expect(JSON.parse(receiver.received[0]!.body)).toMatchObject({ type: 'invoice.paid', data: { invoice: 'inv_1', amount: 4200 } });
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
    await receiver.until(2);
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

  it('the live feed shows an attempt of a new message as it happens', async () => {
    const page = await newPage();
    await page.goto((await portalUrl('customer_42')).url);
    await page.getByRole('link', { name: 'Live' }).click();
    await page.getByText('● live').waitFor();
    const before = receiver.received.length;
    await t.client.request(SendMessageDocument, { input: { appId, recipientId: 'customer_42', eventType: 'invoice.paid', data: { invoice: 'inv_2' } } });
    await receiver.until(before + 1);
    const live = page.getByTestId('live-attempt');
    await expect.poll(() => live.first().textContent()).toMatch(/invoice\.paid\s*succeeded.*HTTP 200/s);
    await page.setViewportSize(PHONE);
    await page.screenshot({ path: `${SCREENSHOTS}/portal-live-phone.png`, fullPage: true });
    await page.close();
  });

  it('filters the message log by event type', async () => {
    await t.client.request(SendMessageDocument, { input: { appId, recipientId: 'customer_7', eventType: 'invoice.paid', data: { n: 1 } } });
    await t.client.request(SendMessageDocument, { input: { appId, recipientId: 'customer_7', eventType: 'invoice.voided', data: { n: 2 } } });
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
    await t.client.raw('mutation ($input: RevokePortalSessionsInput!) { revokePortalSessions(input: $input) }', { input: { appId, recipientId: 'customer_9' } });
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
});
