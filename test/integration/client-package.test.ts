import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { liveSubscribers } from '../support/live.ts';
import { eventually } from '../support/receiver.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const packageDir = path.join(root, 'packages/client');
// The compiler only: the project it checks resolves its imports from its own node_modules.
const tsc = path.join(root, 'node_modules/typescript/bin/tsc');

/** A backend in another repository: plain TypeScript against the installed package, nothing else. */
const BACKEND = `
import {
  AttemptUpdatedDocument,
  CreateAppDocument,
  CreateEndpointDocument,
  CreateEventTypeDocument,
  createDispatchClient,
  DispatchClientError,
  MessageDocument,
  ViewerDocument,
} from '@dispatch/client';

const client = createDispatchClient({ url: process.env.DISPATCH_URL!, apiKey: process.env.DISPATCH_API_KEY! });

const { viewer } = await client.request(ViewerDocument);
const kind: 'OPERATOR' | 'PORTAL' = viewer.kind;

const { createApp: app } = await client.request(CreateAppDocument, { input: { name: 'Packed backend' } });
// @ts-expect-error: variables are typed; CreateAppInput has no field "nam"
const typo = () => client.request(CreateAppDocument, { input: { nam: 'typo' } });
void typo;
await client.request(CreateEventTypeDocument, {
  input: { appId: app.id, name: 'invoice.paid', schema: { type: 'object', required: ['invoiceId'] } },
});
const { createEndpoint: endpoint } = await client.request(CreateEndpointDocument, {
  input: { appId: app.id, recipientId: 'customer_1', url: process.env.RECEIVER_URL! },
});

// The live feed of the app's attempts, open before the send.
const live = (async () => {
  for await (const { attemptUpdated } of client.subscribe(AttemptUpdatedDocument, { appId: app.id })) {
    if (attemptUpdated.status !== 'SENDING') return attemptUpdated.status;
  }
  return 'ENDED';
})();

// No messageId given: the client makes one, so a retry could not send it twice.
const sent = await client.sendMessage({
  appId: app.id,
  recipientId: 'customer_1',
  eventType: 'invoice.paid',
  data: { invoiceId: 'inv_1' },
});
const again = await client.sendMessage({
  appId: app.id,
  recipientId: 'customer_1',
  eventType: 'invoice.paid',
  data: { invoiceId: 'inv_1' },
  messageId: sent.message.messageId,
});
const liveStatus = await live;

let attempts: { status: string; responseStatusCode: number | null }[] = [];
for (let i = 0; i < 100 && attempts.every((a) => a.status !== 'SUCCEEDED'); i++) {
  const { message } = await client.request(MessageDocument, { appId: app.id, id: sent.message.id });
  attempts = (message?.attempts.nodes ?? []).map((a) => ({ status: a.status, responseStatusCode: a.responseStatusCode }));
  if (attempts.every((a) => a.status !== 'SUCCEEDED')) await new Promise((r) => setTimeout(r, 100));
}

let code: string | undefined;
try {
  await client.request(CreateEventTypeDocument, { input: { appId: 'app_missing', name: 'x' } });
} catch (error) {
  if (error instanceof DispatchClientError) code = error.code;
}
await client.close();

console.log(JSON.stringify({
  kind,
  endpointId: endpoint.id,
  secret: endpoint.secret,
  messageId: sent.message.messageId,
  deduplicated: [sent.deduplicated, again.deduplicated],
  liveStatus,
  attempts,
  code,
}));
`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with none of the outer npm run's settings (npm_config_*), so npm sees only `cwd`. */
function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const ok = (result: Run, what: string) => {
  expect(result.code, `${what} failed:\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`).toBe(0);
  return result;
};

describe('@dispatch/client, packed and installed in a backend of its own', () => {
  let t: TestDispatch;
  let receiver: Server;
  let project: string;

  beforeAll(async () => {
    t = await startTestDispatch();
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-backend-'));
    // Holds each webhook until the backend's feed is subscribed, so the feed sees the attempt end.
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', async () => {
        await eventually(async () => ((await liveSubscribers(t.url, 'attemptUpdated')) > 0 ? true : undefined), {
          timeoutMs: 20_000,
        }).catch(() => undefined);
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    receiver?.closeAllConnections();
    await new Promise((resolve) => receiver?.close(resolve));
    await t?.stop();
    if (project) await fs.rm(project, { recursive: true, force: true });
  });

  it('npm pack gives a tarball that installs in an empty project, type-checks with tsc and runs on plain node', async () => {
    // npm pack runs the package's prepack: codegen, then tsc to dist/.
    const packed = ok(await run('npm', ['pack', '--json', '--pack-destination', project], packageDir), 'npm pack');
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as {
      filename: string;
      size: number;
      unpackedSize: number;
      files: { path: string }[];
    }[];
    const files = info!.files.map((f) => f.path).sort();
    expect(files).toEqual(
      expect.arrayContaining([
        'README.md',
        'dist/generated.d.ts',
        'dist/generated.js',
        'dist/index.d.ts',
        'dist/index.js',
      ]),
    );
    // Built output and the schema only: no TypeScript sources, no tests.
    expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
    console.info(
      `@dispatch/client tarball: ${info!.filename} ${info!.size} bytes packed, ${info!.unpackedSize} unpacked, ${files.length} files`,
    );

    await fs.writeFile(
      path.join(project, 'package.json'),
      JSON.stringify({ name: 'a-backend', private: true, type: 'module' }),
    );
    ok(
      await run(
        'npm',
        [
          'install',
          '--no-audit',
          '--no-fund',
          '--prefer-offline',
          '--ignore-scripts',
          path.join(project, info!.filename),
          '@types/node@^20',
        ],
        project,
      ),
      'npm install',
    );
    const installed = JSON.parse(
      await fs.readFile(path.join(project, 'node_modules/@dispatch/client/package.json'), 'utf8'),
    );
    console.info(`@dispatch/client dependencies: ${JSON.stringify(installed.dependencies)}`);

    await fs.writeFile(path.join(project, 'backend.ts'), BACKEND);
    await fs.writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          lib: ['ES2023'],
          types: ['node'],
          strict: true,
          skipLibCheck: false,
          outDir: 'dist',
        },
        include: ['backend.ts'],
      }),
    );
    ok(await run(process.execPath, [tsc, '-p', project], project), 'tsc');

    const result = ok(
      await run(process.execPath, [path.join(project, 'dist/backend.js')], project, {
        DISPATCH_URL: t.url,
        DISPATCH_API_KEY: t.apiKey,
        RECEIVER_URL: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
      }),
      'node dist/backend.js',
    );
    const out = JSON.parse(result.stdout.trim().split('\n').at(-1)!);
    expect(out.kind).toBe('OPERATOR');
    expect(out.endpointId).toMatch(/^ep_/);
    expect(out.secret).toMatch(/^whsec_/);
    expect(out.messageId).toMatch(/^[0-9a-f-]{36}$/);
    expect(out.deduplicated).toEqual([false, true]);
    expect(out.liveStatus).toBe('SUCCEEDED');
    expect(out.attempts).toEqual([{ status: 'SUCCEEDED', responseStatusCode: 200 }]);
    expect(out.code).toBe('NOT_FOUND');
  }, 400_000);
});
