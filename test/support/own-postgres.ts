import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type EmbeddedDatabase, startEmbeddedPostgres } from '../../src/db/embedded.ts';

/** A PostgreSQL of one test file's own, which it may stop and start again without touching any other test. */
export interface OwnPostgres {
  /** Its URL; the same across restarts (same data, same port). */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  /** Starts it again on the same data and port. */
  start(): Promise<void>;
  /** Stops it if running and deletes its data. */
  remove(): Promise<void>;
}

export async function startOwnPostgres(label: string): Promise<OwnPostgres> {
  // The postgres user must be able to enter the folder (mkdtemp makes it 700).
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `dispatch-${label}-`));
  await fs.chmod(dir, 0o755);
  const data = path.join(dir, 'data');
  let server: EmbeddedDatabase | undefined = await startEmbeddedPostgres({ dir: data, database: 'dispatch' });
  const url = server.url;
  const port = Number(new URL(url).port);
  return {
    url,
    port,
    async stop() {
      await server?.stop();
      server = undefined;
    },
    async start() {
      server = await startEmbeddedPostgres({ dir: data, database: 'dispatch', port });
      if (server.url !== url) throw new Error(`PostgreSQL came back at ${server.url}, not ${url}`);
    },
    async remove() {
      await server?.stop();
      server = undefined;
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
