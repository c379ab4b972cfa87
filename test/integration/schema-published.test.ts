import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateAppDocument, CreatePortalSessionDocument } from '../../packages/client/src/index.ts';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const committed = readFileSync(path.join(root, 'schema.graphql'), 'utf8');

describe('the schema, published for backends in other repositories', () => {
  let t: TestDispatch;
  beforeAll(async () => {
    t = await startTestDispatch();
  });
  afterAll(async () => {
    await t?.stop();
  });

  const get = (authorization?: string) =>
    fetch(`${t.url}/graphql/schema.graphql`, { headers: authorization ? { authorization } : {} });

  it('GET /graphql/schema.graphql gives an API key the same text as schema.graphql', async () => {
    const response = await get(`Bearer ${t.apiKey}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/graphql/);
    expect(await response.text()).toBe(committed);
  });

  it('refuses no token and a bad one (401 UNAUTHENTICATED), and a portal token (403 FORBIDDEN)', async () => {
    for (const authorization of [undefined, 'Bearer dk_not_a_key', 'Basic abc']) {
      const response = await get(authorization);
      expect(response.status, String(authorization)).toBe(401);
      expect((await response.json()).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    }
    const { createApp } = await t.client.request(CreateAppDocument, { input: { name: 'Schema portal' } });
    const { createPortalSession } = await t.client.request(CreatePortalSessionDocument, {
      input: { appId: createApp.id, recipientId: 'customer_schema' },
    });
    const response = await get(`Bearer ${createPortalSession.token}`);
    expect(response.status).toBe(403);
    expect((await response.json()).errors[0].extensions.code).toBe('FORBIDDEN');
  });

  it('`dispatch schema` prints it, without a database, from any directory', async () => {
    const cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-schema-'));
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' };
      const child = spawn(process.execPath, [path.join(root, 'bin/dispatch.js'), 'schema'], {
        cwd,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const code = await new Promise((resolve) => child.on('close', resolve));
      expect(code, stderr).toBe(0);
      expect(stdout).toBe(committed);
    } finally {
      await fs.rm(cwd, { recursive: true, force: true });
    }
  });
});
