import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchClient } from '../../packages/client/src/index.ts';
import { connectDatabase } from '../../src/db/client.ts';
import { findRunningEmbeddedPostgres, startEmbeddedPostgres } from '../../src/db/embedded.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createDeliveryApp, createEndpoint, send } from '../support/delivery.ts';
import { type Receiver, startReceiver } from '../support/receiver.ts';

const root = path.resolve(import.meta.dirname, '../..');

interface NpmStart {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `npm start` as a terminal runs it: in a process group of its own (the
 * terminal's foreground group, which Ctrl-C signals as a whole), with the
 * embedded PostgreSQL under `dataDir` and deliveries to 127.0.0.1 allowed.
 */
function npmStart(dataDir: string): NpmStart {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DISPATCH_DATA_DIR: dataDir,
    PORT: '0',
    HOST: '127.0.0.1',
    DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
    LOG_LEVEL: 'info',
  };
  delete env.DATABASE_URL;
  const child = spawn('npm', ['start', '--silent'], {
    cwd: root,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

/** Signals every process of the run's group (Ctrl-C in its terminal when SIGINT); resolves with how npm exited. */
async function signalGroup(run: NpmStart, signal: NodeJS.Signals) {
  try {
    process.kill(-run.child.pid!, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
  return run.exited;
}

async function listening(run: NpmStart): Promise<string> {
  for (;;) {
    const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(run.output());
    if (match) return match[1]!;
    const ended = await Promise.race([run.exited, new Promise((resolve) => setTimeout(resolve, 100))]);
    if (ended) throw new Error(`npm start ended before listening: ${JSON.stringify(ended)}\n${run.output()}`);
  }
}

/** Processes whose command line names `dataDir`: the embedded PostgreSQL and its workers. */
function processesUsing(dataDir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(dataDir) && !cmdline.includes('vitest')) found.push(`${pid}: ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Lines of the log that report a problem. */
const errorLines = (output: string) =>
  output.split('\n').filter((line) => /\b(ERROR|FATAL)\b|Unhandled|Error:|EACCES/.test(line));

describe('npm start in a terminal', () => {
  let project: string;
  let dataDir: string;
  let receiver: Receiver;

  beforeAll(async () => {
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-start-'));
    // As root, the embedded PostgreSQL runs as user postgres, which must be able to enter the data folder.
    await fs.chmod(project, 0o755);
    dataDir = path.join(project, '.dispatch');
    // Slow enough that an attempt is in flight when the signal comes.
    receiver = await startReceiver([], { status: 200, body: 'ok', delayMs: 2_000 });
  });
  afterAll(async () => {
    await receiver?.close();
    await fs.rm(project, { recursive: true, force: true });
  });

  /** Starts Dispatch, sends a message, and sends `signal` (to the process group, or to npm) while its attempt is in flight. */
  async function signalDuringAttempt(signal: NodeJS.Signals, target: 'group' | 'process') {
    const run = npmStart(dataDir);
    try {
      const url = await listening(run);
      const postgres = await findRunningEmbeddedPostgres({ dir: path.join(dataDir, 'postgres') });
      const db = connectDatabase(postgres!.url, { max: 1 });
      const { token } = await createApiKey(db.prisma, { workspaceName: `signals-${signal}-${target}` });
      await db.close();
      const client = createDispatchClient({ url, apiKey: token });
      const appId = await createDeliveryApp(client, { retrySchedule: [60], attemptTimeoutMs: 20_000 });
      await createEndpoint(client, { appId, recipientId: 'customer_1', url: receiver.url });
      const before = receiver.received.length;
      const message = await send(client, { appId, recipientId: 'customer_1' });
      await receiver.nth(before + 1);
      process.kill(target === 'group' ? -run.child.pid! : run.child.pid!, signal);
      const exit = await run.exited;
      return { exit, output: run.output(), messageId: message.id };
    } finally {
      if (run.child.exitCode === null && run.child.signalCode === null) await signalGroup(run, 'SIGKILL');
    }
  }

  /** The attempts of a message, read from the data folder once Dispatch has stopped. */
  async function attemptsOf(messageId: string) {
    const postgres = await startEmbeddedPostgres({ dir: path.join(dataDir, 'postgres') });
    const db = connectDatabase(postgres.url, { max: 1 });
    try {
      const { rows } = await db.pool.query<{ status: string; responseStatusCode: number | null }>(
        `SELECT a.status, a."responseStatusCode" FROM "Attempt" a JOIN "Delivery" d ON d.id = a."deliveryId"
          WHERE d."messageId" = $1`,
        [messageId],
      );
      const { rows: sending } = await db.pool.query(`SELECT id FROM "Attempt" WHERE status = 'SENDING'`);
      return { attempts: rows, sending };
    } finally {
      await db.close();
      await postgres.stop();
    }
  }

  it.each([
    { signal: 'SIGINT' as const, target: 'group' as const, name: 'Ctrl-C (SIGINT to the whole process group)' },
    { signal: 'SIGINT' as const, target: 'process' as const, name: 'SIGINT to npm' },
    { signal: 'SIGTERM' as const, target: 'process' as const, name: 'SIGTERM to npm' },
  ])(
    '$name lets the attempt in flight finish and be recorded, exits 0 with no error, and leaves no PostgreSQL running',
    async ({ signal, target }) => {
      const { exit, output, messageId } = await signalDuringAttempt(signal, target);
      expect(errorLines(output), output).toEqual([]);
      expect(exit, output).toEqual({ code: 0, signal: null });
      expect(output).toContain(`${signal}: finishing in-flight work and stopping`);
      expect(processesUsing(dataDir)).toEqual([]);
      expect(existsSync(path.join(dataDir, 'postgres', 'postmaster.pid'))).toBe(false);
      const { attempts, sending } = await attemptsOf(messageId);
      expect(attempts).toEqual([{ status: 'SUCCEEDED', responseStatusCode: 200 }]);
      expect(sending).toEqual([]);
    },
    180_000,
  );

  it('prints where the API, dashboard and portal are, and how to get a key, at the port it listens on', async () => {
    const run = npmStart(dataDir);
    try {
      const url = await listening(run);
      const port = new URL(url).port;
      const output = run.output();
      expect(output).toContain(`http://localhost:${port}/graphql`);
      expect(output).toContain(`http://localhost:${port}/dashboard`);
      expect(output).toContain(`http://localhost:${port}/portal`);
      expect(output).toContain('npx dispatch api-key create --workspace NAME');
      // The dashboard it names is served there.
      const dashboard = await fetch(`http://127.0.0.1:${port}/dashboard`, { redirect: 'manual' });
      expect(dashboard.status).toBe(302);
    } finally {
      expect((await signalGroup(run, 'SIGINT')).code, run.output()).toBe(0);
    }
  }, 120_000);

  it('a second npm start in the same folder says Dispatch already runs there (pid and port), exits non-zero, and leaves the first untouched', async () => {
    const first = npmStart(dataDir);
    try {
      const url = await listening(first);
      const port = new URL(url).port;
      const second = npmStart(dataDir);
      const ended = await second.exited;
      expect(ended.code, second.output()).not.toBe(0);
      const said = /Dispatch is already running from this folder \(pid (\d+), port (\d+)/.exec(second.output());
      expect(said, second.output()).not.toBeNull();
      expect(said![2]).toBe(port);
      process.kill(Number(said![1]), 0); // the pid it names is alive
      expect(second.output()).not.toMatch(/TypeError|\bat .*\.ts:\d+/);
      // The first still serves, on the same embedded PostgreSQL.
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      expect(first.child.exitCode).toBeNull();
    } finally {
      expect((await signalGroup(first, 'SIGINT')).code, first.output()).toBe(0);
    }
  }, 120_000);
});

describe('npm start after a run was killed with SIGKILL', () => {
  let project: string;
  beforeAll(async () => {
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-killed-'));
    await fs.chmod(project, 0o755);
  });
  afterAll(async () => {
    await fs.rm(project, { recursive: true, force: true });
  });

  it('stops the embedded PostgreSQL the killed run left running, starts, and stops cleanly', async () => {
    const dataDir = path.join(project, '.dispatch');
    const killed = npmStart(dataDir);
    await listening(killed);
    await signalGroup(killed, 'SIGKILL');
    // Its PostgreSQL, in a process group of its own, outlives it.
    expect(processesUsing(dataDir)).not.toEqual([]);

    const next = npmStart(dataDir);
    try {
      const url = await listening(next);
      expect(next.output()).toMatch(/stopping the embedded PostgreSQL \(pid \d+\) that a killed run left running/);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    } finally {
      expect((await signalGroup(next, 'SIGINT')).code, next.output()).toBe(0);
    }
    expect(errorLines(next.output()), next.output()).toEqual([]);
    expect(processesUsing(dataDir)).toEqual([]);
  }, 180_000);
});

describe.runIf(process.getuid?.() === 0)('npm start as root in a folder user postgres cannot enter', () => {
  let project: string;
  beforeAll(async () => {
    // mkdtemp makes it mode 700, as a clone under /root is.
    project = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-private-'));
  });
  afterAll(async () => {
    await fs.rm(project, { recursive: true, force: true });
  });

  it('fails with one sentence saying what to do, instead of a raw EACCES', async () => {
    const run = npmStart(path.join(project, '.dispatch'));
    const ended = await run.exited;
    const output = run.output().trim();
    expect(ended.code, output).toBe(1);
    expect(output.split('\n'), output).toHaveLength(1);
    expect(output).toContain(`user postgres, which cannot enter ${project}`);
    expect(output).toMatch(/DISPATCH_DATA_DIR|DATABASE_URL/);
    expect(output).not.toMatch(/EACCES|\bat .*:\d+:\d+/);
    expect(processesUsing(project)).toEqual([]);
  }, 120_000);
});
