// `dispatch listen`: a recipient's messages, from a running Dispatch over its
// resumable live feed (messageCreated with cursors), forwarded to a URL on the
// developer's machine as real deliveries look: the same body, Standard
// Webhooks headers signed with a whsec_ secret of its own. Needs nothing but
// the Dispatch server: no relay. See README, "Develop your receiver locally".
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { generateSecret, isValidSecret, signatureHeaders } from './webhooks/signing.ts';

export interface ListenOptions {
  /** Dispatch's base URL (http or https). */
  url: string;
  /** A portal token (dpt_…) or an API key (with app and recipient). */
  token: string;
  appId?: string;
  /** The operator's id of the recipient. */
  recipient?: string;
  forwardTo: string;
  /** Only these event types (all when absent). */
  events?: string[];
  /** Start from now, not from the cursor the state file holds. */
  fromNow?: boolean;
  /** The state file: the last cursor and the signing secret, per server, app and recipient. */
  stateFile: string;
  /** A whsec_ secret to sign with (else the one in the state file, else a new one). */
  secret?: string;
  /** Per request; like a real delivery's default. */
  timeoutMs?: number;
  out(line: string): void;
  err(line: string): void;
}

interface Listening {
  /**
   * Resolves when stop() was called and the delivery in flight (if any)
   * finished, or when the server refused for good (with the reason).
   */
  done: Promise<string | undefined>;
  stop(): void;
}

interface StateEntry {
  cursor?: string;
  secret: string;
}

type State = Record<string, StateEntry>;

function readState(file: string): State {
  try {
    const value = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as State) : {};
  } catch {
    return {};
  }
}

/** Written whole to a temporary file, then renamed over the old one: a kill never leaves half a file. */
function writeState(file: string, state: State) {
  mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const temporary = `${file}.${process.pid}.${randomUUID()}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(temporary, file);
}

/**
 * The data as PostgreSQL prints jsonb (what a real delivery's body holds):
 * ", " between items and ": " after keys; keys come in the order received
 * (jsonb's own order, as Dispatch read them).
 */
export function jsonbText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(jsonbText).join(', ')}]`;
  if (value && typeof value === 'object')
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}: ${jsonbText(v)}`)
      .join(', ')}}`;
  return JSON.stringify(value);
}

const SUBSCRIPTION = `subscription Listen($appId: ID!, $recipientId: String, $after: Cursor) {
  messageCreated(appId: $appId, recipientId: $recipientId, after: $after) {
    id messageId eventType createdAt data cursor
  }
}`;

interface Message {
  id: string;
  messageId: string;
  eventType: string;
  createdAt: string;
  data: unknown;
  cursor: string;
}

async function graphql<T>(url: string, token: string, query: string, variables?: object): Promise<T> {
  const response = await fetch(`${url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const result = (await response.json()) as { data?: T; errors?: { message: string }[] };
  if (result.errors?.length) throw new Error(result.errors.map((e) => e.message).join('; '));
  return result.data as T;
}

const clock = () => new Date().toISOString().replace('T', ' ').slice(0, 19);

/** Starts listening; returns once the first subscription is made (or throws when it cannot be). */
export async function listen(options: ListenOptions): Promise<Listening> {
  const base = options.url.replace(/\/+$/, '').replace(/\/graphql$/, '');
  const { out, err } = options;
  let appId = options.appId;
  let recipient = options.recipient;
  if (options.token.startsWith('dpt_')) {
    // A portal token names its app and recipient.
    const { viewer } = await graphql<{
      viewer: { app: { id: string } | null; recipient: { recipientId: string } | null };
    }>(base, options.token, '{ viewer { app { id } recipient { recipientId } } }');
    appId ??= viewer.app?.id;
    recipient ??= viewer.recipient?.recipientId;
  }
  if (!appId || !recipient) throw new Error('--app and --recipient are needed with an API key');

  const key = `${base} ${appId} ${recipient}`;
  const state = readState(options.stateFile);
  const saved = state[key];
  if (options.secret !== undefined && !isValidSecret(options.secret))
    throw new Error('--secret must be a whsec_ secret (whsec_ and base64)');
  const secret = options.secret ?? saved?.secret ?? generateSecret();
  let cursor = options.fromNow ? undefined : saved?.cursor;
  const save = () => {
    const fresh = readState(options.stateFile);
    fresh[key] = { ...(cursor ? { cursor } : {}), secret };
    writeState(options.stateFile, fresh);
  };
  save();
  const events = options.events?.length ? new Set(options.events) : undefined;

  out(`Ready! Forwarding ${recipient}'s messages of ${appId} to ${options.forwardTo}`);
  out(`Your webhook signing secret is ${secret} (kept in ${options.stateFile})`);
  out(cursor ? 'Resuming after the last message forwarded.' : 'Starting from now.');

  // Messages are forwarded one at a time, in the feed's order; the cursor is saved after each.
  const queue: Message[] = [];
  let working = false;
  let stopped = false;
  let client: Client | undefined;
  let fatal: string | undefined;
  let finish: () => void = () => undefined;
  const done = new Promise<string | undefined>((resolve) => (finish = () => resolve(fatal)));
  /** Cursor of the newest message queued, so a resubscription does not queue it twice. */
  let queuedCursor = cursor;

  async function forward(message: Message) {
    const body = `{"type":${JSON.stringify(message.eventType)},"timestamp":"${new Date(message.createdAt).toISOString()}","data":${jsonbText(message.data)}}`;
    const timestamp = Math.floor(Date.now() / 1000);
    const started = performance.now();
    try {
      const response = await fetch(options.forwardTo, {
        method: 'POST',
        headers: {
          ...signatureHeaders({ msgId: message.messageId, timestamp, body, secrets: [secret] }),
          'content-type': 'application/json',
        },
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
      });
      await response.arrayBuffer().catch(() => undefined);
      const ms = Math.round(performance.now() - started);
      out(
        `${clock()}  ${message.eventType} [${message.messageId}]  <-- ${response.status} ${response.statusText} (${ms} ms)`,
      );
    } catch (error) {
      const ms = Math.round(performance.now() - started);
      const reason = (error as Error).name === 'TimeoutError' ? 'timed out' : (error as Error).message;
      out(`${clock()}  ${message.eventType} [${message.messageId}]  <-- failed: ${reason} (${ms} ms)`);
    }
  }

  async function work() {
    if (working) return;
    working = true;
    try {
      while (queue.length && !stopped) {
        const message = queue.shift()!;
        if (!events || events.has(message.eventType)) await forward(message);
        cursor = message.cursor;
        save();
      }
    } finally {
      working = false;
      if (stopped) finish();
    }
  }

  let failures = 0;
  let firstResult: ((error?: Error) => void) | undefined;
  const first = new Promise<void>((resolve, reject) => {
    firstResult = (error) => (error ? reject(error) : resolve());
  });

  function giveUp(reason: string) {
    if (stopped) return;
    fatal = reason;
    stopped = true;
    void client?.dispose();
    if (!working) finish();
  }

  function subscribe() {
    if (stopped) return;
    const ws = createClient({
      url: `${base.replace(/^http/, 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${options.token}` },
      retryAttempts: 0,
      shouldRetry: () => false,
      lazy: false,
      onNonLazyError: () => undefined,
      on: {
        connected: () => {
          failures = 0;
        },
      },
    });
    client = ws;
    let ended = false;
    const again = (why: string) => {
      if (ended) return;
      ended = true;
      void ws.dispose();
      if (stopped) return;
      const delay = Math.min(10_000, 250 * 2 ** failures++);
      err(`${clock()}  connection lost (${why}); reconnecting in ${(delay / 1000).toFixed(1)} s`);
      setTimeout(subscribe, delay).unref?.();
    };
    ws.subscribe<{ messageCreated: Message }>(
      {
        query: SUBSCRIPTION,
        variables: { appId, recipientId: recipient, after: queuedCursor ?? null },
      },
      {
        next: (result) => {
          if (result.errors?.length) {
            const code = (result.errors[0] as { extensions?: { code?: string } }).extensions?.code;
            const message = result.errors.map((e) => e.message).join('; ');
            if (code === 'CURSOR_EXPIRED') {
              err(`${clock()}  ${message}; carrying on from now`);
              queuedCursor = undefined;
              return;
            }
            if (
              code === 'UNAUTHENTICATED' ||
              code === 'NOT_FOUND' ||
              code === 'FORBIDDEN' ||
              code === 'BAD_USER_INPUT'
            ) {
              firstResult?.(new Error(message));
              firstResult = undefined;
              stopped = true;
              err(`${clock()}  ${message}`);
              finish();
              return;
            }
            err(`${clock()}  ${message}`);
            return;
          }
          const message = result.data?.messageCreated;
          if (!message) return;
          queuedCursor = message.cursor;
          queue.push(message);
          void work();
        },
        error: (error) => {
          const close = error as { code?: number; reason?: string };
          // The socket was refused its token: retrying cannot help.
          if (close.code === 4401 || close.code === 4403) {
            giveUp(`UNAUTHENTICATED: ${close.reason || 'the server refused this token'}`);
            return;
          }
          const why = Array.isArray(error)
            ? error.map((e: { message: string }) => e.message).join('; ')
            : (error as { reason?: string }).reason || (error as Error).message || 'closed';
          again(why);
        },
        complete: () => again('the server ended the subscription'),
      },
    );
    // The subscription is taken once the socket is open; the first one reports back.
    firstResult?.();
    firstResult = undefined;
  }

  subscribe();
  await first;
  return {
    done,
    stop() {
      if (stopped) return;
      stopped = true;
      void client?.dispose();
      if (!working) finish();
    },
  };
}
