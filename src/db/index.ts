import path from 'node:path';
import type { Config } from '../config.ts';
import { connectDatabase, type Database } from './client.ts';
import { startEmbeddedPostgres } from './embedded.ts';
import { migrate } from './migrate.ts';

export { connectDatabase, type Database } from './client.ts';

export interface StartedDatabase extends Database {
  /** Stops the embedded PostgreSQL too, when this process started one. */
  shutdown(): Promise<void>;
}

/**
 * The database of this process: DATABASE_URL, or an embedded PostgreSQL
 * under the data folder (kept between runs). Applies pending migrations.
 */
export async function startDatabase(
  config: Pick<Config, 'databaseUrl' | 'dataDir'>,
  options: { log?: (line: string) => void; migrate?: boolean; poolSize?: number } = {},
): Promise<StartedDatabase> {
  let url = config.databaseUrl;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!url) {
    const embedded = await startEmbeddedPostgres({ dir: path.join(config.dataDir, 'postgres'), port: 54329 });
    url = embedded.url;
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
    async shutdown() {
      await db.close();
      await stopEmbedded?.();
    },
  };
}
