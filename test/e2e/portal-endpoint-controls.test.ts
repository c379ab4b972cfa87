import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CreateAppDocument,
  CreateEventTypeDocument,
  CreatePortalSessionDocument,
} from '../../packages/client/src/index.ts';
import { createEndpoint } from '../support/delivery.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

describe("an endpoint's rate limit and ordering in the portal, in a real browser", () => {
  let t: TestDispatch;
  let context: BrowserContext;
  let userDataDir: string;

  beforeAll(async () => {
    await build({ configFile: path.resolve('portal-app/vite.config.ts'), logLevel: 'warn' });
    t = await startTestDispatch({ DISPATCH_ROLE: 'api' });
    userDataDir = await mkdtemp(path.join(tmpdir(), 'dispatch-chromium-'));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
  }, 120_000);
  afterAll(async () => {
    await context?.close();
    await t?.stop();
    if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
  });

  async function app(portalCanSetRateLimit: boolean) {
    const { createApp } = await t.client.request(CreateAppDocument, {
      input: { name: 'Billing', portalCanSetRateLimit },
    });
    await t.client.request(CreateEventTypeDocument, { input: { appId: createApp.id, name: 'invoice.paid' } });
    return createApp.id;
  }

  async function open(appId: string, recipientId: string, endpointId: string): Promise<Page> {
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId, recipientId },
    });
    const page = await context.newPage();
    await page.goto(`${t.url}/portal#token=${createPortalSession.token}`);
    await page.getByRole('heading', { name: 'Endpoints' }).waitFor();
    await page.evaluate((h) => (location.hash = h), `#/endpoints/${endpointId}`);
    await page.getByRole('button', { name: 'Save changes' }).waitFor();
    return page;
  }

  const read = async (id: string) =>
    (
      (await t.client.raw(`query ($id: ID!) { endpoint(id: $id) { rateLimit ordering } }`, { id })).data as {
        endpoint: { rateLimit: number | null; ordering: string };
      }
    ).endpoint;

  it('the customer sets a rate limit and in-order delivery, and clears the limit again', async () => {
    const appId = await app(true);
    const endpoint = await createEndpoint(t.client, { appId, recipientId: 'c1', url: 'https://example.com/hooks' });
    const page = await open(appId, 'c1', endpoint.id);
    await page.getByLabel('Rate limit').fill('25');
    await page.getByLabel('Deliver in order').check();
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Saved.').waitFor();
    expect(await read(endpoint.id)).toEqual({ rateLimit: 25, ordering: 'FIFO' });
    // The list says so.
    await page.evaluate(() => (location.hash = '#/endpoints'));
    await page.getByTestId('controls').getByText('at most 25 per second · in order, one at a time').waitFor();

    await page.evaluate((h) => (location.hash = h), `#/endpoints/${endpoint.id}`);
    await page.getByRole('button', { name: 'Save changes' }).waitFor();
    expect(await page.getByLabel('Rate limit').inputValue()).toBe('25');
    await page.getByLabel('Rate limit').fill('');
    await page.getByLabel('Deliver in order').uncheck();
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Saved.').waitFor();
    expect(await read(endpoint.id)).toEqual({ rateLimit: null, ordering: 'NONE' });
    await page.close();
  });

  it("when the operator keeps rate limits to itself, the field is read-only and saving leaves the operator's limit", async () => {
    const appId = await app(false);
    const endpoint = await createEndpoint(t.client, {
      appId,
      recipientId: 'c2',
      url: 'https://example.com/hooks',
      rateLimit: 7,
    });
    const page = await open(appId, 'c2', endpoint.id);
    const field = page.getByLabel('Rate limit');
    expect(await field.isDisabled()).toBe(true);
    expect(await field.inputValue()).toBe('7');
    await page.getByText('The rate limit is set by Billing.').waitFor();
    await page.getByLabel('Deliver in order').check();
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Saved.').waitFor();
    expect(await read(endpoint.id)).toEqual({ rateLimit: 7, ordering: 'FIFO' });
    await page.close();
  });
});
