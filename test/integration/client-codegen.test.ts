import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDispatch, type TestDispatch } from '../support/dispatch.ts';
import { runNode } from '../support/process.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const readme = readFileSync(path.join(root, 'packages/client/README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
/** The README's codegen.ts and its example of a backend's own operation, as a backend copies them. */
const CODEGEN = blocks.find((b) => b.includes('CodegenConfig'))!;
const USAGE = blocks.find((b) => b.includes("from './gql/index.js'"))!;

describe("the client README's codegen.ts, for a backend's own operations", () => {
  let t: TestDispatch;
  let project: string;
  beforeAll(async () => {
    t = await startTestDispatch();
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-codegen-'));
    // graphql-codegen, its client preset and tsc, as the backend's devDependencies.
    await fs.symlink(path.join(root, 'node_modules'), path.join(project, 'node_modules'), 'dir');
  });
  afterAll(async () => {
    await t?.stop();
    if (project) await fs.rm(project, { recursive: true, force: true });
  });

  it('fetches the schema from /graphql/schema.graphql and types the documents the client takes', async () => {
    expect(CODEGEN).toContain('/graphql/schema.graphql');
    await fs.mkdir(path.join(project, 'src'));
    await fs.writeFile(path.join(project, 'package.json'), JSON.stringify({ private: true, type: 'module' }));
    await fs.writeFile(path.join(project, 'codegen.ts'), CODEGEN);
    const client = path.join(root, 'packages/client/src/index.ts');
    await fs.writeFile(
      path.join(project, 'src/backend.ts'),
      `import { createDispatchClient } from ${JSON.stringify(client)};
const dispatch = createDispatchClient({ url: 'http://127.0.0.1:1', apiKey: 'dk_example' });
const appId: string = 'app_example';
${USAGE}
const ids: string[] | undefined = app?.messages.nodes.map((n) => n.messageId);
// @ts-expect-error: $appId is required
void (() => dispatch.request(FailedDeliveries, { since: '2026-01-01T00:00:00Z' }));
export { ids };
`,
    );
    await fs.writeFile(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          skipLibCheck: true,
          types: ['node'],
        },
        include: ['src'],
      }),
    );

    const env = { DISPATCH_URL: t.url, DISPATCH_API_KEY: t.apiKey };
    const codegen = await runNode([path.join(root, 'node_modules/@graphql-codegen/cli/cjs/bin.js')], project, env);
    expect(codegen.code, codegen.output).toBe(0);
    const tsc = await runNode([path.join(root, 'node_modules/typescript/bin/tsc'), '-p', project], project);
    expect(tsc.code, tsc.output).toBe(0);
    // The same config without a valid key is refused by the route, so codegen fails.
    await fs.rm(path.join(project, 'src/gql'), { recursive: true });
    const refused = await runNode([path.join(root, 'node_modules/@graphql-codegen/cli/cjs/bin.js')], project, {
      ...env,
      DISPATCH_API_KEY: 'dk_wrong',
    });
    expect(refused.code).not.toBe(0);
  }, 240_000);
});
