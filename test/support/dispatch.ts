import { createDispatchClient, type DispatchClient } from '../../packages/client/src/index.ts';
import { type Config, loadConfig } from '../../src/config.ts';
import { createApiKey } from '../../src/domain/api-keys.ts';
import { createLogger } from '../../src/logger.ts';
import { type Dispatch, startDispatch } from '../../src/main.ts';
import { createTestDatabase } from './database.ts';

export interface TestDispatch {
  dispatch: Dispatch;
  url: string;
  /** A client with a fresh API key of a fresh workspace. */
  client: DispatchClient;
  apiKey: string;
  /** Another workspace's key and client, to prove isolation. */
  newWorkspace(name?: string): Promise<{ apiKey: string; client: DispatchClient; workspaceId: string }>;
  clientFor(token: string): DispatchClient;
  stop(): Promise<void>;
}

let counter = 0;

/**
 * Dispatch on its own fresh database, on a free port of 127.0.0.1, with
 * loopback deliveries allowed (the receivers of tests live there).
 */
export async function startTestDispatch(
  env: Record<string, string> = {},
  options: Pick<NonNullable<Parameters<typeof startDispatch>[1]>, 'spanExporter'> = {},
): Promise<TestDispatch> {
  const db = await createTestDatabase();
  const config: Config = loadConfig({
    DATABASE_URL: db.url,
    PORT: '0',
    HOST: '127.0.0.1',
    DISPATCH_ALLOW_NETWORKS: '127.0.0.0/8,::1/128',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    ...env,
  });
  const dispatch = await startDispatch(config, { logger: createLogger(config.logLevel, 'test-dispatch'), ...options });
  const clientFor = (token: string) => createDispatchClient({ url: dispatch.url, apiKey: token });
  const newWorkspace = async (name = `workspace-${process.pid}-${++counter}`) => {
    const created = await createApiKey(dispatch.db.prisma, { workspaceName: name });
    return { apiKey: created.token, client: clientFor(created.token), workspaceId: created.workspace.id };
  };
  const first = await newWorkspace();
  return {
    dispatch,
    url: dispatch.url,
    client: first.client,
    apiKey: first.apiKey,
    newWorkspace,
    clientFor,
    async stop() {
      await dispatch.stop();
      await db.drop();
    },
  };
}
