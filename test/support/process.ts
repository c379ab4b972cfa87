import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const projectNode = path.join(root, 'node_modules', '.bin', 'node');

export interface DispatchProcess {
  url: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its log). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * `npm start` as its own process (src/main.ts under tsx on the project's
 * Node 24), on a free port of 127.0.0.1; resolves once it listens.
 */
export async function spawnDispatch(env: Record<string, string>): Promise<DispatchProcess> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env };
  const node = existsSync(projectNode) ? projectNode : process.execPath;
  const child = spawn(node, ['--import', 'tsx', path.join(root, 'src', 'main.ts')], {
    cwd: root,
    env: childEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`Dispatch (${env.DISPATCH_ROLE}) did not start in 60 s:\n${log}`)),
      60_000,
    );
    child.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString('utf8');
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`Dispatch (${env.DISPATCH_ROLE}) exited with ${code}:\n${log}`));
    });
  });
  return {
    url,
    child,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(force);
    },
  };
}

/** Runs a Node script to its end in `cwd`; resolves its exit code and everything it printed. */
export function runNode(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (chunk) => (output += chunk));
    child.stderr?.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
}

/**
 * A worker process (DISPATCH_ROLE worker) on the database at `databaseUrl`
 * that looks for lost jobs every second (default 15 s), so a killed worker's
 * jobs are taken up once their heartbeat (10 s) lapses; added to `workers`.
 */
export async function startWorkerProcess(databaseUrl: string, workers: DispatchProcess[]): Promise<DispatchProcess> {
  const worker = await spawnDispatch({
    DATABASE_URL: databaseUrl,
    DISPATCH_ROLE: 'worker',
    DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8',
    DISPATCH_QUEUE_SUPERVISE_SECONDS: '1',
  });
  workers.push(worker);
  return worker;
}
