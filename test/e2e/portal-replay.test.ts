import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreatePortalSessionDocument, SendMessageDocument } from '../../packages/client/src/index.ts';
import { createDeliveryApp, createEndpoint, send, settled } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

// Screenshots of the new screens, for the eye; not committed.
const SHOTS = '/tmp/dispatch-portal-shots';

describe('the portal: scheduled sends and "Replay failed messages" with its live progress, in a real browser', () => {
  let t: TestDispatch;
  let context: BrowserContext;
  let userDataDir: string;
  let flaky: Receiver;
  let appId: string;

  beforeAll(async () => {
    await build({ configFile: path.resolve('portal-app/vite.config.ts'), logLevel: 'warn' });
    // Three messages fail twice each (a try and a retry), then everything succeeds.
    [t, flaky] = await Promise.all([
      startTestDispatch(),
      startReceiver(Array.from({ length: 6 }, () => ({ status: 500, body: 'down' }))),
    ]);
    userDataDir = await mkdtemp(path.join(tmpdir(), 'dispatch-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      viewport: { width: 1280, height: 900 },
    });
    appId = await createDeliveryApp(t.client, { retrySchedule: [1], attemptTimeoutMs: 2_000 });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await Promise.all([t?.stop(), flaky?.close()]);
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  async function portal(recipientId: string, hash: string): Promise<Page> {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId },
    });
    const page = await context.newPage();
    await page.goto(`${t.url}/portal#token=${createPortalSession.token}`);
    await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
    await page.evaluate((h) => (location.hash = h), hash);
    return page;
  }

  it('replays the failed messages of a window and shows the progress live until finished', async () => {
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'rita', url: flaky.url });
    const messages = [];
    for (let n = 0; n < 3; n++) messages.push(await send(t.client, { appId, recipientId: 'rita', data: { n } }));
    for (const m of messages) await settled(t.dispatch.db.pool, m.id, ['FAILED'], endpoint.id);
    expect(flaky.received).toHaveLength(6);

    const page = await portal('rita', '#/messages');
    await page.getByRole('heading', { name: 'Messages' }).waitFor();
    const panel = page.getByTestId('replay-panel');
    await panel.locator('summary').click();
    await panel.getByLabel('Replay to endpoint').selectOption(endpoint.id);
    await panel.getByRole('button', { name: 'Replay failed messages' }).click();
    await expect.poll(() => panel.getByRole('status').first().textContent()).toContain('Replaying 3 failed deliveries');
    const progress = panel.getByTestId('replay-progress');
    await expect.poll(() => progress.getAttribute('data-done'), { timeout: 30_000 }).toBe('true');
    expect(await progress.getByTestId('replay-succeeded').textContent()).toBe('3');
    expect(await progress.getByTestId('replay-failed').textContent()).toBe('0');
    expect(await progress.locator('progress').evaluate((p: HTMLProgressElement) => [p.value, p.max])).toEqual([3, 3]);
    expect(
      flaky.received
        .slice(6)
        .map((r) => JSON.parse(r.body).data.n)
        .sort(),
    ).toEqual([0, 1, 2]);
    // The list is read again once the replay is done.
    await expect.poll(() => page.locator('li.message .badge-succeeded').count()).toBe(3);
    await page.screenshot({ path: `${SHOTS}/replay-failed-finished.png`, fullPage: true });

    // Again: nothing failed is left in the window.
    await panel.getByRole('button', { name: 'Replay failed messages' }).click();
    await expect.poll(() => panel.textContent()).toContain('nothing to replay');
    await page.close();
  }, 90_000);

  it('lists a scheduled message as scheduled, and cancels it from its page', async () => {
    const r = await startReceiver();
    try {
      await createEndpoint(t.client, { appId, recipientId: 'sam', url: r.url });
      const deliverAt = new Date(Date.now() + 3600_000).toISOString();
      const { sendMessage } = await t.client.request(SendMessageDocument, {
        input: { appId, recipientId: 'sam', eventType: 'invoice.paid', data: { later: true }, deliverAt },
      });
      const page = await portal('sam', '#/messages');
      const card = page.locator('li.message', { has: page.getByTestId('scheduled-for') });
      await expect.poll(() => card.count()).toBe(1);
      expect(await card.textContent()).toMatch(/scheduled for[\s\S]*scheduled/);
      await card.locator('a').click();
      const cancel = page.getByRole('button', { name: 'Cancel scheduled send' });
      await cancel.click();
      await expect
        .poll(() => page.getByRole('status').first().textContent())
        .toContain('Canceled: 1 scheduled delivery');
      await expect.poll(() => page.getByTestId('delivery').first().textContent()).toContain('canceled');
      expect(await cancel.count()).toBe(0);
      const [delivery] = await t.dispatch.db.prisma.delivery.findMany({ where: { messageId: sendMessage.message.id } });
      expect(delivery?.status).toBe('CANCELED');
      await page.close();
    } finally {
      await r.close();
    }
  }, 60_000);

  it("the dashboard replays one recipient's failed messages", async () => {
    const failing = await startReceiver([{ status: 500 }, { status: 500 }]);
    try {
      const endpoint = await createEndpoint(t.client, { appId, recipientId: 'dana', url: failing.url });
      const message = await send(t.client, { appId, recipientId: 'dana', data: { n: 'dana' } });
      await settled(t.dispatch.db.pool, message.id, ['FAILED'], endpoint.id);
      const page = await context.newPage();
      await page.goto(`${t.url}/portal#/`);
      await page.evaluate((key) => sessionStorage.setItem('dispatch.apiKey', key), t.apiKey);
      await page.goto(`${t.url}/portal#/dashboard/apps/${appId}/messages`);
      const panel = page.getByTestId('replay-panel');
      await panel.locator('summary').click();
      await panel.getByLabel('Replay to recipient').fill('dana');
      await panel.getByRole('button', { name: 'Replay failed messages' }).click();
      await expect.poll(() => panel.getByRole('status').first().textContent()).toContain('Replaying 1 failed delivery');
      await expect.poll(() => panel.getByTestId('replay-progress').getAttribute('data-done')).toBe('true');
      expect(await panel.getByTestId('replay-succeeded').textContent()).toBe('1');
      await failing.nth(3);
      await page.close();
    } finally {
      await failing.close();
    }
  }, 60_000);
});
