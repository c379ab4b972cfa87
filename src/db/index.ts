import path from 'node:path';
import type { Config } from '../config.ts';
import { connectDatabase, type Database } from './client.ts';
import { findRunningEmbeddedPostgres, startEmbeddedPostgres } from './embedded.ts';
import { migrate } from './migrate.ts';

export { connectDatabase, type Database } from './client.ts';
export { EmbeddedPostgresError } from './embedded.ts';
export { type FolderLock, lockDataFolder } from './folder-lock.ts';

export interface StartedDatabase extends Database {
  /** The pid of the embedded PostgreSQL this process started, if it did. */
  embeddedPid?: number;
  /** Stops the embedded PostgreSQL too, when this process started one. */
  shutdown(): Promise<void>;
}

/**
 * The database of this process: DATABASE_URL, or an embedded PostgreSQL
 * under the data folder (kept between runs). Applies pending migrations.
 * With `reuseRunningEmbedded`, an embedded PostgreSQL that another process
 * already runs on the data folder is used (and left running) instead of
 * starting one: that is how the CLI works beside `npm start`.
 */
export async function startDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  options: {
    log?: (line: string) => void;
    migrate?: boolean;
    poolSize?: number;
    reuseRunningEmbedded?: boolean;
    /** An embedded PostgreSQL a killed run of ours left on the data folder: stopped before ours starts. */
    orphanPid?: number;
  } = {},
): Promise<StartedDatabase> {
  let url = config.databaseUrl;
  let stopEmbedded: (() => Promise<void>) | undefined;
  let embeddedPid: number | undefined;
  const dir = path.join(config.dataDir, 'postgres');
  const running = !url && options.reuseRunningEmbedded ? await findRunningEmbeddedPostgres({ dir }) : undefined;
  if (running) {
    url = running.url;
    options.log?.(
      `embedded PostgreSQL already running at ${url.replace(/:[^:@/]+@/, ':***@')} (data in ${config.dataDir})`,
    );
  } else if (!url) {
    // Detached: Ctrl-C in a terminal reaches this process, which stops the server itself once it has drained.
    const embedded = await startEmbeddedPostgres({
      dir,
      port: 54329,
      detached: true,
      orphanPid: options.orphanPid,
      notify: options.log,
    });
    url = embedded.url;
    embeddedPid = embedded.pid;
    stopEmbedded = embedded.stop;
    options.log?.(`embedded PostgreSQL at ${url.replace(/:[^:@/]+@/, ':***@')} (data in ${config.dataDir})`);
  }
  try {
    if (options.migrate !== false) {
      for (const name of await migrate(url)) options.log?.(`applied migration ${name}`);
    }
  } catch (error) {
    await stopEmbedded?.();
    throw error;
  }
  const db = connectDatabase(url, { max: options.poolSize });
  return {
    ...db,
    embeddedPid,
    async shutdown() {
      await db.close();
      await stopEmbedded?.();
    },
  };
}
