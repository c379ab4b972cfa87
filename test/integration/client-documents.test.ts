import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runNode } from '../support/process.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const codegen = path.join(root, 'node_modules/@graphql-codegen/cli/cjs/bin.js');

/** `graphql-codegen --check` (what `npm run client:check` runs) in a package folder: 0 when current, 1 when stale. */
const check = (packageDir: string) => runNode([codegen, '--config', 'codegen.ts', '--check'], packageDir);

describe("the client package's typed documents match schema.graphql", () => {
  let copy: string;
  beforeAll(async () => {
    // The package's codegen inputs and its committed output, beside a schema that moved on.
    copy = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-client-check-'));
    const packageDir = path.join(copy, 'packages/client');
    await fs.mkdir(path.join(packageDir, 'src'), { recursive: true });
    for (const file of ['codegen.ts', 'src/operations.graphql', 'src/generated.ts'])
      await fs.copyFile(path.join(root, 'packages/client', file), path.join(packageDir, file));
    const schema = await fs.readFile(path.join(root, 'schema.graphql'), 'utf8');
    const moved = schema.replace(/enum DeliveryStatus \{\n/, 'enum DeliveryStatus {\n  BOUNCED\n');
    expect(moved).not.toBe(schema);
    await fs.writeFile(path.join(copy, 'schema.graphql'), moved);
    // Codegen's plugins, resolved from the copy as from the repository.
    await fs.symlink(path.join(root, 'node_modules'), path.join(copy, 'node_modules'), 'dir');
  });
  afterAll(async () => {
    if (copy) await fs.rm(copy, { recursive: true, force: true });
  });

  it('src/generated.ts is what codegen makes of schema.graphql today', async () => {
    const result = await check(path.join(root, 'packages/client'));
    expect(result.code, result.output).toBe(0);
  }, 60_000);

  it('a schema change without `npm run codegen` fails the check', async () => {
    const result = await check(path.join(copy, 'packages/client'));
    expect(result.code, result.output).toBe(1);
    expect(result.output).toMatch(/generated\.ts/);
  }, 60_000);
});
