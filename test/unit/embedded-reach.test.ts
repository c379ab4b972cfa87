import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertReachable } from '../../src/db/embedded.ts';

// As root, the embedded PostgreSQL runs as user postgres: the binaries under
// node_modules must be reachable by it too, not only the data folder (a clone
// under /root fails at spawning initdb with a bare EACCES).
describe.runIf(process.getuid?.() === 0)('what user postgres can reach', () => {
  const postgres = {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
  };
  let open: string;
  let closed: string;
  beforeAll(async () => {
    open = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-reach-open-'));
    await fs.chmod(open, 0o755);
    closed = await fs.mkdtemp(path.join(os.tmpdir(), 'dispatch-reach-closed-')); // mode 700, as /root is
    for (const dir of [open, closed]) {
      await fs.mkdir(path.join(dir, 'node_modules', 'bin'), { recursive: true });
      await fs.writeFile(path.join(dir, 'node_modules', 'bin', 'initdb'), '', { mode: 0o755 });
    }
  });
  afterAll(async () => {
    await fs.rm(open, { recursive: true, force: true });
    await fs.rm(closed, { recursive: true, force: true });
  });

  it('passes paths every user can enter', () => {
    expect(() => assertReachable(postgres, [path.join(open, 'node_modules', 'bin', 'initdb'), open])).not.toThrow();
  });

  it('names the first folder it cannot enter and what to do, for a binary deep inside it', () => {
    expect(() => assertReachable(postgres, [path.join(closed, 'node_modules', 'bin', 'initdb')])).toThrow(
      new RegExp(`user postgres, which cannot enter ${closed};.*DATABASE_URL`),
    );
  });
});
