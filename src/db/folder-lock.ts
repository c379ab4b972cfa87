import { readFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { EmbeddedPostgresError } from './embedded.ts';

/** The Dispatch process that runs the embedded PostgreSQL of a data folder. */
export interface FolderLock {
  /** The embedded PostgreSQL a killed run left running (its pid, as that run recorded it), if any. */
  orphanPostgresPid: number | undefined;
  /** Records the embedded PostgreSQL's pid (so a run after a kill can stop it) and the port of the API (for the message a second start prints). */
  record(state: { postgresPid?: number; port?: number }): Promise<void>;
  release(): void;
}

/** Whether `pid` is a live Node process (after a reboot or container restart a stale file may name anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('node');
  } catch {
    return true; // no /proc to tell
  }
}

/**
 * Takes `<dataDir>/dispatch.pid` (created exclusively: one of two starts
 * wins), so a second `npm start` on the same data folder says who runs there
 * instead of fighting over the embedded PostgreSQL. A file naming a dead
 * process (a run killed with SIGKILL) is taken over. Lines: pid, port of the
 * API, pid of the embedded PostgreSQL.
 */
export async function lockDataFolder(dataDir: string): Promise<FolderLock> {
  const file = path.join(dataDir, 'dispatch.pid');
  await fs.mkdir(dataDir, { recursive: true });
  let orphanPostgresPid: number | undefined;
  for (let tries = 0; ; tries++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 3) throw error;
    }
    const [pidLine, portLine, postgresLine] = (await fs.readFile(file, 'utf8').catch(() => '')).split('\n');
    const pid = Number(pidLine);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      const port = Number(portLine);
      const where = Number.isInteger(port) && port > 0 ? `port ${port}` : 'still starting';
      throw new EmbeddedPostgresError(
        `Dispatch is already running from this folder (pid ${pid}, ${where}; data in ${dataDir}); stop it first (Ctrl-C in its terminal, or kill ${pid}), or give this one another DISPATCH_DATA_DIR or a DATABASE_URL`,
      );
    }
    // The previous run is gone; the PostgreSQL it started may not be (it runs in a process group of its own).
    const postgresPid = Number(postgresLine);
    if (Number.isInteger(postgresPid) && postgresPid > 0) orphanPostgresPid = postgresPid;
    await fs.rm(file, { force: true });
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    // Only our own file: a later start may have taken over after we were thought dead.
    try {
      if (Number(readFileSync(file, 'utf8').split('\n')[0]) === process.pid) rmSync(file, { force: true });
    } catch {}
  };
  process.once('exit', release);
  const state: { postgresPid?: number; port?: number } = {};
  return {
    orphanPostgresPid,
    async record(update) {
      Object.assign(state, update);
      await fs.writeFile(file, `${process.pid}\n${state.port ?? ''}\n${state.postgresPid ?? ''}\n`);
    },
    release,
  };
}
