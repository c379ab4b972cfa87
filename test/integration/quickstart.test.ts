import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';

const root = path.resolve(import.meta.dirname, '../..');

describe("README's quickstart script", () => {
  let t: TestDispatch;
  beforeAll(async () => {
    t = await startTestDispatch();
  });
  afterAll(async () => t.stop());

  it('creates an app, event type and endpoint, and its receiver verifies the signed delivery', async () => {
    const child = spawn(path.join(root, 'node_modules/.bin/node'), ['--import', 'tsx', 'scripts/quickstart.ts'], {
      cwd: root,
      env: { ...process.env, DISPATCH_URL: t.url, DISPATCH_API_KEY: t.apiKey },
    });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.stderr.on('data', (chunk) => (out += chunk));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(out).toContain('receiver verified {"type":"invoice.paid"');
    expect(out).toMatch(/delivery SUCCEEDED attempts SUCCEEDED 204 \d+ms/);
    expect(code).toBe(0);
  }, 60_000);
});
