import { readFileSync, rmSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { EmbeddedPostgresError } from './embedded.ts';

/** The Dispatch process that runs the embedded PostgreSQL of a data folder. */
export interface FolderLock {
  /** Records the port the server listens on, for the message a second start prints. */
  listening(port: number): Promise<void>;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes `<dataDir>/dispatch.pid` (created exclusively: one of two starts
 * wins), so a second `npm start` on the same data folder says who runs there
 * instead of fighting over the embedded PostgreSQL. A file naming a dead
 * process (a run killed with SIGKILL) is taken over. Lines: pid, port.
 */
export async function lockDataFolder(dataDir: string): Promise<FolderLock> {
  const file = path.join(dataDir, 'dispatch.pid');
  await fs.mkdir(dataDir, { recursive: true });
  for (let tries = 0; ; tries++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || tries > 3) throw error;
    }
    const [pidLine, portLine] = (await fs.readFile(file, 'utf8').catch(() => '')).split('\n');
    const pid = Number(pidLine);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
      const port = Number(portLine);
      const where = Number.isInteger(port) && port > 0 ? `port ${port}` : 'still starting';
      throw new EmbeddedPostgresError(
        `Dispatch is already running from this folder (pid ${pid}, ${where}; data in ${dataDir}); stop it first (Ctrl-C in its terminal, or kill ${pid}), or give this one another DISPATCH_DATA_DIR or a DATABASE_URL`,
      );
    }
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
  return {
    listening: (port) => fs.writeFile(file, `${process.pid}\n${port}\n`),
    release,
  };
}
