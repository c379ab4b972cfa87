// Generates what is derived from the committed sources, after every install:
// the Prisma client and Pothos types (from prisma/schema.prisma) and the typed
// GraphQL documents (from schema.graphql), then the portal SPA's build
// (portal-app/dist, served at /portal), so `npm start` needs no build step. Prisma's CLI insists on a
// schema-engine binary it would download; generate never runs it, so a stub
// stands in for it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY:
    process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? path.join(root, 'scripts/schema-engine-stub.sh'),
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  CHECKPOINT_DISABLE: '1',
};

function run(script, args) {
  const result = spawnSync(process.execPath, [path.join(root, script), ...args], { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

run('node_modules/prisma/build/index.js', ['generate', '--schema', 'prisma/schema.prisma']);
run('node_modules/@graphql-codegen/cli/cjs/bin.js', ['--config', 'codegen.ts']);
run('node_modules/vite/bin/vite.js', ['build', '--config', 'portal-app/vite.config.ts', '--logLevel', 'warn']);
