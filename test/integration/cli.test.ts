import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDatabase, type Database } from '../../src/db/client.ts';
import { startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { readMigrations } from '../../src/db/migrate.ts';
import { authenticateApiKey } from '../../src/domain/api-keys.ts';
import { createTestDatabase } from '../support/database.ts';

const BIN = fileURLToPath(new URL('../../bin/dispatch.js', import.meta.url));
const TOKEN = /^dk_[A-Za-z0-9_-]{43}$/;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: string[];
}

/** Runs bin/dispatch.js as a user would, from `cwd`, with only the given database settings. */
function dispatch(args: string[], options: { databaseUrl?: string; cwd: string }): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  delete env.DISPATCH_DATA_DIR;
  if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, lines: stdout.trimEnd().split('\n') }));
  });
}

describe('the dispatch command', () => {
  let created: Awaited<ReturnType<typeof createTestDatabase>>;
  let db: Database;
  let cwd: string;
  beforeAll(async () => {
    created = await createTestDatabase();
    db = connectDatabase(created.url, { max: 2 });
    // Anywhere but the project: the command must not depend on its working directory.
    cwd = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-cli-'));
  });
  afterAll(async () => {
    await db.close();
    await created.drop();
    await fs.rm(cwd, { recursive: true, force: true });
  });

  it('creates a key whose last line authenticates, lists it without the token, and revokes it', async () => {
    const create = await dispatch(['api-key', 'create', '--workspace', 'Acme CLI', '--name', 'ci'], {
      databaseUrl: created.url,
      cwd,
    });
    expect(create.stderr).not.toMatch(/error/i);
    expect(create.code).toBe(0);
    const token = create.lines.at(-1)!;
    expect(token).toMatch(TOKEN);
    expect(create.stdout).toContain('Created workspace "Acme CLI"');

    const identity = await authenticateApiKey(db.prisma, token);
    expect(identity).not.toBeNull();
    const workspace = await db.prisma.workspace.findUniqueOrThrow({ where: { name: 'Acme CLI' } });
    expect(identity!.workspaceId).toBe(workspace.id);

    const list = await dispatch(['api-key', 'list', '--workspace', 'Acme CLI'], { databaseUrl: created.url, cwd });
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(identity!.apiKeyId);
    expect(list.stdout).toContain(token.slice(0, 10));
    expect(list.stdout).toContain('ci');
    expect(list.stdout).toContain('active');
    expect(list.stdout).not.toContain(token.slice(10));

    const revoke = await dispatch(['api-key', 'revoke', identity!.apiKeyId], { databaseUrl: created.url, cwd });
    expect(revoke.code).toBe(0);
    expect(revoke.stdout).toContain(`Revoked API key ${identity!.apiKeyId}`);
    // A fresh client, as another API process would be: no cached success.
    const fresh = connectDatabase(created.url, { max: 1 });
    try {
      expect(await authenticateApiKey(fresh.prisma, token)).toBeNull();
    } finally {
      await fresh.close();
    }
    const after = await dispatch(['api-key', 'list', '--workspace', 'Acme CLI'], { databaseUrl: created.url, cwd });
    expect(after.stdout).toMatch(/revoked \d{4}-/);
  });

  it('a second key for a known workspace joins it', async () => {
    const first = await dispatch(['api-key', 'create', '--workspace', 'Twice'], { databaseUrl: created.url, cwd });
    const second = await dispatch(['api-key', 'create', '--workspace', 'Twice'], { databaseUrl: created.url, cwd });
    expect([first.code, second.code]).toEqual([0, 0]);
    expect(second.stdout).toMatch(/^Workspace "Twice"/);
    const a = await authenticateApiKey(db.prisma, first.lines.at(-1)!);
    const b = await authenticateApiKey(db.prisma, second.lines.at(-1)!);
    expect(a?.workspaceId).toBeDefined();
    expect(b?.workspaceId).toBe(a?.workspaceId);
  });

  it('migrate applies pending migrations and says so, then reports the database up to date', async () => {
    const empty = await createTestDatabase({ empty: true });
    try {
      const first = await dispatch(['migrate'], { databaseUrl: empty.url, cwd });
      expect(first.code).toBe(0);
      for (const { name } of readMigrations()) expect(first.stdout).toContain(`applied migration ${name}`);
      const client = new pg.Client({ connectionString: empty.url });
      await client.connect();
      const { rows } = await client.query('SELECT count(*)::int AS n FROM "Workspace"');
      await client.end();
      expect(rows[0].n).toBe(0);

      const second = await dispatch(['migrate'], { databaseUrl: empty.url, cwd });
      expect(second.code).toBe(0);
      expect(second.stdout).not.toContain('applied migration');
      expect(second.stdout).toContain('up to date');
    } finally {
      await empty.drop();
    }
  });

  it('help prints the usage and succeeds', async () => {
    const help = await dispatch(['help'], { cwd });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('api-key create --workspace NAME');
    expect(help.stdout).toContain('migrate');
  });

  it.each(
    [
      { args: [], code: 2, message: 'Usage: dispatch <command>' },
      { args: ['launch'], code: 2, message: 'unknown command "launch"' },
      { args: ['api-key'], code: 2, message: 'api-key needs a subcommand' },
      { args: ['api-key', 'rotate'], code: 2, message: 'unknown api-key subcommand "rotate"' },
      { args: ['api-key', 'create'], code: 2, message: '--workspace is required' },
      { args: ['api-key', 'create', '--workspace'], code: 2, message: "Option '--workspace <value>' argument missing" },
      {
        args: ['api-key', 'create', '--workspace', 'W', '--colour', 'red'],
        code: 2,
        message: "Unknown option '--colour'",
      },
      { args: ['api-key', 'list'], code: 2, message: '--workspace is required' },
      { args: ['api-key', 'revoke'], code: 2, message: 'missing argument' },
      { args: ['api-key', 'revoke', 'key_a', 'key_b'], code: 2, message: 'unexpected argument "key_b"' },
      { args: ['migrate', 'now'], code: 2, message: 'unexpected argument "now"' },
      { args: ['api-key', 'revoke', 'key_nothing'], code: 1, message: 'no API key with id "key_nothing"' },
      { args: ['api-key', 'list', '--workspace', 'Nobody'], code: 1, message: 'no workspace named "Nobody"' },
      {
        args: ['api-key', 'create', '--workspace', 'W', '--name', ' '],
        code: 1,
        message: 'API key name must be 1 to 200 characters',
      },
    ].map((c) => ({ ...c, command: ['dispatch', ...c.args].join(' ') })),
  )('`$command` exits $code: $message', async ({ args, code, message }) => {
    const run = await dispatch(args, { databaseUrl: created.url, cwd });
    expect(run.code).toBe(code);
    expect(run.stderr).toContain(message);
    expect(run.stdout).not.toMatch(/dk_/);
  });

  it('beside a running `npm start`, uses its embedded PostgreSQL; alone, starts and stops one itself', async () => {
    const project = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-cli-embedded-'));
    // PostgreSQL runs as its own user when we are root; let it in.
    await fs.chmod(project, 0o755);
    const dataDir = path.join(project, '.dispatch', 'postgres');
    let server: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
    try {
      // Stands in for `npm start`: the embedded server on the project's data folder.
      server = await startEmbeddedPostgres({ dir: dataDir });
      const create = await dispatch(['api-key', 'create', '--workspace', 'Shared'], { cwd: project });
      expect(create.stderr).toContain('embedded PostgreSQL already running');
      expect(create.code).toBe(0);
      const token = create.lines.at(-1)!;
      expect(token).toMatch(TOKEN);

      // The server is still up after the command, and holds the key.
      const shared = connectDatabase(server.url, { max: 1 });
      try {
        expect(await authenticateApiKey(shared.prisma, token)).not.toBeNull();
      } finally {
        await shared.close();
      }

      await server.stop();
      server = undefined;
      expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);

      const list = await dispatch(['api-key', 'list', '--workspace', 'Shared'], { cwd: project });
      expect(list.code).toBe(0);
      expect(list.stderr).not.toContain('already running');
      expect(list.stderr).toContain('embedded PostgreSQL at');
      expect(list.stdout).toContain(token.slice(0, 10));
      // It stopped the server it started.
      expect(existsSync(path.join(dataDir, 'postmaster.pid'))).toBe(false);
    } finally {
      await server?.stop();
      await fs.rm(project, { recursive: true, force: true });
    }
  }, 120_000);
});
