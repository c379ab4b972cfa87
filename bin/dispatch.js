#!/usr/bin/env node
// The `dispatch` command. Whatever Node runs this launcher (it may be an old
// system Node: keep this file plain JavaScript for Node 20), it runs
// src/cli.ts with tsx on the project's own Node 24 (the `node` devDependency),
// passing arguments, stdio, signals and the exit code through.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// node_modules/.bin/node is a symlink to the real binary on POSIX; on Windows
// it is a .cmd shim that spawn cannot run without a shell, so use ours there.
const projectNode = path.join(root, 'node_modules', '.bin', 'node');
const node = process.platform !== 'win32' && existsSync(projectNode) ? projectNode : process.execPath;

// Resolved from this package, not from the caller's working directory.
let tsx = 'tsx';
try {
  tsx = import.meta.resolve('tsx');
} catch {
  // Node < 20.6 has no import.meta.resolve: let the child resolve it.
}

const child = spawn(node, ['--import', tsx, path.join(root, 'src', 'cli.ts'), ...process.argv.slice(2)], {
  stdio: 'inherit',
});

// A terminal's Ctrl-C reaches both processes; a `kill` reaches only this one.
const forward = (signal) => () => {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
};
const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
for (const signal of signals) process.on(signal, forward(signal));

child.on('error', (error) => {
  process.stderr.write(`dispatch: cannot run ${node}: ${error.message}\n`);
  process.exit(1);
});

child.on('exit', (code, signal) => {
  if (signal) {
    // Die of the same signal, so callers see what happened.
    for (const s of signals) process.removeAllListeners(s);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
