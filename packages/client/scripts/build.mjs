// The package's build: dist/ from src/ (tsc: JavaScript and .d.ts), and the
// schema the documents were generated from, shipped beside them so a backend
// can run its own codegen against the same version. `npm run build` runs
// codegen first (src/generated.ts from ../../schema.graphql).
import { spawnSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
rmSync(path.join(dir, 'dist'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const result = spawnSync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')], { stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
copyFileSync(path.join(dir, '../../schema.graphql'), path.join(dir, 'schema.graphql'));
