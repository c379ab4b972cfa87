import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ArchiveEventTypeDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
  SendMessageDocument,
} from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { liveSubscribers } from '../support/live.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

// Screenshots of the new screens, for the eye; not committed.
const SHOTS = '/tmp/dispatch-portal-shots';
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

const INVOICE_SCHEMA = {
  type: 'object',
  required: ['invoiceId', 'amount'],
  properties: {
    invoiceId: { type: 'string' },
    amount: { type: 'integer', minimum: 1 },
    currency: { type: 'string', enum: ['EUR', 'USD'] },
  },
  examples: [{ invoiceId: 'inv_1001', amount: 4200, currency: 'EUR' }],
};

describe('the portal and dashboard features of issue 14, in a real browser', () => {
  let t: TestDispatch;
  let context: BrowserContext;
  let userDataDir: string;
  let ok: Receiver;
  let failing: Receiver;
  let appId: string;

  beforeAll(async () => {
    await build({ configFile: path.resolve('portal-app/vite.config.ts'), logLevel: 'warn' });
    [t, ok, failing] = await Promise.all([
      startTestDispatch(),
      startReceiver(),
      startReceiver([], { status: 500, body: 'boom' }),
    ]);
    userDataDir = await mkdtemp(path.join(tmpdir(), 'dispatch-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      viewport: DESKTOP,
    });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: t.url });
    appId = (await t.client.request(CreateAppDocument, { input: { name: 'Billing' } })).createApp.id;
    await t.client.request(CreateEventTypeDocument, {
      input: { appId, name: 'invoice.paid', description: 'An invoice was paid in full.', schema: INVOICE_SCHEMA },
    });
    await t.client.request(CreateEventTypeDocument, {
      input: { appId, name: 'invoice.voided', description: 'An invoice was voided.' },
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await Promise.all([t?.stop(), ok?.close(), failing?.close()]);
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  async function portal(recipientId: string, hash = '', viewport = DESKTOP): Promise<Page> {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId },
    });
    const page = await context.newPage();
    await page.setViewportSize(viewport);
    await page.goto(`${t.url}/portal#token=${createPortalSession.token}`);
    await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
    if (hash) await page.evaluate((h) => (location.hash = h), hash);
    return page;
  }

  async function dashboard(hash: string): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${t.url}/portal#/`);
    await page.evaluate((key) => sessionStorage.setItem('dispatch.apiKey', key), t.apiKey);
    await page.goto(`${t.url}/portal${hash}`);
    return page;
  }

  const endpointFor = async (recipientId: string, url: string) =>
    (await t.client.request(CreateEndpointDocument, { input: { appId, recipientId, url } })).createEndpoint.id;

  it('sends a test event: the example fills the data, the attempt arrives live; a bad payload is refused beside its field', async () => {
    await endpointFor('tess', ok.url);
    const page = await portal('tess', '#/test');
    await page.getByRole('heading', { name: 'Send a test event' }).waitFor();
    await expect.poll(() => page.title()).toBe('Send a test event · Billing · webhooks');
    const data = page.getByLabel('Data (JSON)');
    await expect.poll(async () => JSON.parse(await data.inputValue())).toEqual(INVOICE_SCHEMA.examples[0]);
    const before = ok.received.length;
    await page.getByRole('button', { name: 'Send test event' }).click();
    const result = page.getByTestId('test-result');
    await expect.poll(() => result.getByTestId('attempt').first().textContent()).toMatch(/succeeded\s*HTTP 200/);
    await ok.nth(before + 1);
    expect(JSON.parse(ok.received[before]!.body)).toMatchObject({
      type: 'invoice.paid',
      data: INVOICE_SCHEMA.examples[0],
    });
    const message = await t.dispatch.db.prisma.message.findFirstOrThrow({ where: { eventType: 'invoice.paid' } });
    expect(message.test).toBe(true);
    await page.screenshot({ path: `${SHOTS}/test-event-sent-desktop.png`, fullPage: true });

    // Data the schema refuses: the API's INVALID_PAYLOAD is shown, focused, and tied to the data field.
    await data.fill('{"invoiceId": 7}');
    await page.getByRole('button', { name: 'Send test event' }).click();
    const error = page.locator('#test-error');
    await expect.poll(() => error.textContent()).toContain('does not match the schema of invoice.paid');
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('test-error');
    expect(await data.getAttribute('aria-invalid')).toBe('true');
    expect(await data.getAttribute('aria-describedby')).toBe('test-error');
    await page.setViewportSize(PHONE);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.screenshot({ path: `${SHOTS}/test-event-invalid-phone.png`, fullPage: true });
    await page.close();
  }, 90_000);

  it('the event catalog shows each event type with its description, example and schema', async () => {
    const page = await portal('tess', '#/event-types');
    const types = page.getByTestId('event-type');
    await expect.poll(() => types.count()).toBe(2);
    const paid = types.filter({ hasText: 'invoice.paid' });
    expect(await paid.textContent()).toContain('An invoice was paid in full.');
    expect(JSON.parse((await paid.getByTestId('example').textContent())!)).toEqual(INVOICE_SCHEMA.examples[0]);
    await paid.getByText('JSON Schema').click();
    expect(JSON.parse((await paid.getByTestId('schema').textContent())!)).toEqual(INVOICE_SCHEMA);
    expect(await types.filter({ hasText: 'invoice.voided' }).textContent()).toContain('No schema');
    await expect.poll(() => page.title()).toBe('Event types · Billing · webhooks');
    await page.screenshot({ path: `${SHOTS}/catalog-desktop.png`, fullPage: true });
    await paid.getByRole('link', { name: 'Send a test' }).click();
    await expect.poll(() => page.locator('select[name=eventType]').inputValue()).toBe('invoice.paid');
    await page.close();
  }, 60_000);

  it('the messages list counts new messages live and shows them on request; recent deliveries update by themselves, newest first', async () => {
    const endpointId = await endpointFor('liv', ok.url);
    const send = (n: number) =>
      t.client.request(SendMessageDocument, {
        input: { appId, recipientId: 'liv', eventType: 'invoice.voided', data: { n } },
      });
    await send(1);
    const page = await portal('liv', '#/messages');
    await expect.poll(() => page.locator('.message').count()).toBe(1);
    await page.getByRole('heading', { name: 'Messages' }).waitFor();
    // Subscribed once the page shows: send two, and the bar counts them without moving the list.
    const bar = page.getByTestId('new-messages');
    await expect
      .poll(
        async () => {
          if (!(await bar.count())) await send(100);
          return bar.count();
        },
        { timeout: 15_000, interval: 1000 },
      )
      .toBe(1);
    await send(2);
    await expect.poll(() => bar.textContent()).toMatch(/^\d+ new messages: show$/);
    expect(await page.locator('.message').count()).toBe(1);
    const sent = () => t.dispatch.db.prisma.message.count({ where: { recipient: { uid: 'liv' } } });
    const total = await sent();
    await page.screenshot({ path: `${SHOTS}/messages-new-bar-desktop.png` });
    await bar.click();
    await expect.poll(() => page.locator('.message').count()).toBe(total);
    expect(await bar.count()).toBe(0);

    // An endpoint's recent deliveries: a new message shows up without a reload, at the top.
    await page.evaluate((id) => (location.hash = `#/endpoints/${id}`), endpointId);
    const rows = page.getByTestId('recent-delivery');
    await expect.poll(() => rows.count()).toBe(total);
    await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'liv', eventType: 'invoice.paid', data: INVOICE_SCHEMA.examples[0] },
    });
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(total + 1);
    await expect.poll(() => rows.first().textContent()).toMatch(/invoice\.paid\s*succeeded/);
    const times = await rows
      .locator('time')
      .evaluateAll((els) => els.map((e) => Date.parse(e.getAttribute('datetime')!)));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    await page.close();
  }, 90_000);

  it("an endpoint's health chart shows its real attempts per hour, live, with a text twin, over 24 hours or 7 days", async () => {
    // Two successes, then 410 Gone: a failure that disables the endpoint at once (no retry to wait for).
    const receiver = await startReceiver([{ status: 200 }, { status: 200 }, { status: 410 }]);
    try {
      const endpointId = await endpointFor('chart', receiver.url);
      // The pages of earlier tests are closed: once the server has let their subscriptions go, count ours.
      await expect.poll(() => liveSubscribers(t.url, 'attemptUpdated'), { timeout: 15_000 }).toBe(0);
      await expect.poll(() => liveSubscribers(t.url, 'endpointHealthChanged'), { timeout: 15_000 }).toBe(0);
      const page = await portal('chart', `#/endpoints/${endpointId}`);
      const summary = page.getByTestId('health-summary');
      await expect.poll(() => summary.textContent()).toBe('Last 24 hours: no attempts.');
      // The page follows the endpoint's attempts (recent deliveries and the chart) and its health.
      await expect.poll(() => liveSubscribers(t.url, 'attemptUpdated')).toBe(2);
      await expect.poll(() => liveSubscribers(t.url, 'endpointHealthChanged')).toBe(1);

      for (let i = 1; i <= 3; i++) {
        await t.client.request(SendMessageDocument, {
          input: { appId, recipientId: 'chart', eventType: 'invoice.voided', data: { i } },
        });
        await receiver.nth(i);
      }
      // No reload: the chart reads its stats again as the attempts finish.
      await expect
        .poll(() => summary.textContent(), { timeout: 15_000 })
        .toMatch(/^Last 24 hours: 2 succeeded, 1 failed \(66\.7 % succeeded\)\. Busiest hour: .+ with 3\./);
      const chart = page.getByTestId('health-chart');
      expect(await chart.getAttribute('data-succeeded')).toBe('2');
      expect(await chart.getAttribute('data-failed')).toBe('1');
      const drawn = (kind: string) =>
        chart
          .locator(`rect.${kind}`)
          .evaluateAll((rects) => rects.reduce((n, r) => n + Number(r.getAttribute('data-count')), 0));
      expect(await drawn('chart-ok')).toBe(2);
      expect(await drawn('chart-bad')).toBe(1);
      expect(await chart.locator('.chart-bucket').count()).toBeGreaterThanOrEqual(24);
      // Accessible: an image named by its title and described by the same summary.
      expect(await chart.getAttribute('role')).toBe('img');
      expect(await chart.locator('title').first().textContent()).toBe('Attempts per hour, last 24 hours');
      expect(await chart.locator('desc').textContent()).toBe(await summary.textContent());
      // 410 disabled it: the health line follows.
      await expect
        .poll(() => page.getByTestId('health-status').textContent(), { timeout: 15_000 })
        .toContain('disabled');
      await page.screenshot({ path: `${SHOTS}/endpoint-health-chart-desktop.png`, fullPage: true });

      await page.getByRole('button', { name: 'Last 7 days' }).click();
      await expect.poll(() => summary.textContent()).toMatch(/^Last 7 days: 2 succeeded, 1 failed/);
      expect(await page.getByRole('button', { name: 'Last 7 days' }).getAttribute('aria-pressed')).toBe('true');
      expect(await chart.locator('.chart-bucket').count()).toBeGreaterThanOrEqual(168);
      await page.setViewportSize(PHONE);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
      await page.screenshot({ path: `${SHOTS}/endpoint-health-chart-7d-phone.png`, fullPage: true });
      await page.close();
    } finally {
      await receiver.close();
    }
  }, 90_000);

  it('copies the signing secret and the portal link; a failure says in words what the receiver did; each page has a title', async () => {
    const endpointId = await endpointFor('cop', failing.url);
    const page = await portal('cop', `#/endpoints/${endpointId}`);
    await expect.poll(() => page.title()).toBe('Endpoint · Billing · webhooks');
    await page.getByRole('button', { name: 'Reveal' }).click();
    await expect.poll(() => page.getByTestId('secret').textContent()).toMatch(/^whsec_/);
    await page.getByRole('button', { name: 'Copy the signing secret' }).click();
    // "Copied" shows for 2 s only, too short to wait for on a busy machine: the clipboard says it.
    const secret = await page.getByTestId('secret').textContent();
    await expect.poll(() => page.evaluate(() => navigator.clipboard.readText())).toBe(secret);

    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'cop', eventType: 'invoice.voided', data: {} },
    });
    await failing.nth(1);
    await page.evaluate((id) => (location.hash = `#/messages/${id}`), sendMessage.message.id);
    await expect.poll(() => page.title()).toBe('Message · Billing · webhooks');
    await expect
      .poll(() => page.getByTestId('error-kind').first().textContent())
      .toBe('Failed: the receiver answered HTTP 500.');
    expect(await page.getByTestId('attempt').first().textContent()).not.toContain('(http_status)');
    await page.screenshot({ path: `${SHOTS}/attempt-error-words-desktop.png`, fullPage: true });
    await page.close();

    const dash = await dashboard(`#/dashboard/apps/${appId}`);
    await expect.poll(() => dash.title()).toBe('App · Dispatch dashboard');
    await dash.locator('.recipient', { hasText: 'cop' }).getByRole('button', { name: 'Portal link' }).click();
    const link = await dash.getByLabel('Portal link', { exact: true }).inputValue();
    await dash.getByRole('button', { name: 'Copy the portal link' }).click();
    await expect.poll(() => dash.evaluate(() => navigator.clipboard.readText())).toBe(link);
    await dash.close();
  }, 90_000);

  it("a refused endpoint URL: the customer's error names no operator setting, gets focus, and is tied to the URL field", async () => {
    const page = await portal('ursula', '#/endpoints/new', PHONE);
    await page.getByLabel('Endpoint URL').fill('http://10.0.0.1/hook');
    await page.getByRole('button', { name: 'Add endpoint' }).click();
    const error = page.locator('#endpoint-form-error');
    await expect.poll(() => error.textContent()).toContain('webhooks are delivered to public addresses only');
    expect(await error.textContent()).not.toMatch(/DISPATCH_|ALLOW_NETWORKS/);
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('endpoint-form-error');
    const url = page.getByLabel('Endpoint URL');
    expect(await url.getAttribute('aria-invalid')).toBe('true');
    expect(await url.getAttribute('aria-describedby')).toBe('endpoint-form-error');
    await expect.poll(() => page.title()).toBe('Add endpoint · Billing · webhooks');
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(PHONE.width);
    await page.screenshot({ path: `${SHOTS}/endpoint-url-refused-phone.png`, fullPage: true });
    await page.close();
  }, 60_000);

  it('the dashboard: live rows name the message and recipient, its pages name their app and link back, and it unarchives an event type', async () => {
    await endpointFor('dora', ok.url);
    const live = await dashboard(`#/dashboard/apps/${appId}/live`);
    await live.getByText('● live').waitFor();
    await expect.poll(() => live.title()).toBe('Live attempts · Dispatch dashboard');
    await expect.poll(() => live.getByTestId('app-back').textContent()).toContain('Billing');
    const { sendMessage } = await t.client.request(SendMessageDocument, {
      input: { appId, recipientId: 'dora', eventType: 'invoice.voided', data: {}, messageId: 'order-77-voided' },
    });
    const row = live.getByTestId('live-attempt').filter({ hasText: 'order-77-voided' });
    await expect.poll(() => row.first().textContent(), { timeout: 15_000 }).toMatch(/recipient\s*dora/);
    expect(await row.first().textContent()).toContain('invoice.voided');
    expect(sendMessage.message.messageId).toBe('order-77-voided');
    await live.screenshot({ path: `${SHOTS}/dashboard-live-desktop.png`, fullPage: true });
    await live.getByTestId('app-back').getByRole('link').click();
    await live.getByRole('heading', { name: 'Billing' }).waitFor();
    await live.close();

    const messages = await dashboard(`#/dashboard/apps/${appId}/messages`);
    await expect.poll(() => messages.getByTestId('app-back').textContent()).toContain('Billing');
    await messages.close();

    await t.client.request(CreateEventTypeDocument, { input: { appId, name: 'invoice.legacy' } });
    await t.client.request(ArchiveEventTypeDocument, { input: { appId, name: 'invoice.legacy' } });
    const app = await dashboard(`#/dashboard/apps/${appId}`);
    const legacy = app.locator('li', { hasText: 'invoice.legacy' });
    await legacy.getByRole('button', { name: 'Unarchive' }).click();
    await app.getByText('invoice.legacy is active again.').waitFor();
    await expect.poll(() => legacy.getByRole('button', { name: 'Archive' }).count()).toBe(1);
    const row2 = await t.dispatch.db.prisma.eventType.findFirstOrThrow({ where: { appId, name: 'invoice.legacy' } });
    expect(row2.archivedAt).toBeNull();
    await app.close();
  }, 90_000);
});
