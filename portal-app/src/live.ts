import { type Client, createClient } from 'graphql-ws/client';
import { html, nothing } from 'lit-html';
import { gql } from './api.ts';
import { appBackLink } from './dashboard.ts';
import type { LiveAttemptsSubscription, LiveAttemptsSubscriptionVariables, TypedDocumentString } from './generated.ts';
import { LiveAttemptsDocument, RecentAttemptsDocument } from './generated.ts';
import { badge, empty, errorKindText, type Mode, type Redraw, time, toApiError } from './ui.ts';

export type LiveAttempt = LiveAttemptsSubscription['attemptUpdated'];

let client: { token: string; ws: Client; connected: boolean } | undefined;
const connectionListeners = new Set<(connected: boolean) => void>();

/** One graphql-ws connection per token, shared by every screen that subscribes. */
function socket(token: string): Client {
  if (client?.token === token) return client.ws;
  void client?.ws.dispose();
  const url = new URL('/graphql', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = createClient({
    url: url.toString(),
    connectionParams: { authorization: `Bearer ${token}` },
    lazy: true,
    // follow() reconnects itself: graphql-ws would resubscribe with the first variables, not the last cursor.
    retryAttempts: 0,
  });
  const entry = { token, ws, connected: false };
  ws.on('connected', () => {
    entry.connected = true;
    for (const l of connectionListeners) l(true);
  });
  ws.on('closed', () => {
    entry.connected = false;
    for (const l of connectionListeners) l(false);
  });
  client = entry;
  return ws;
}

/**
 * Subscribes to a typed subscription; returns the unsubscribe function.
 * `onError` gets the first error's message and code.
 */
export function subscribe<R, V>(
  token: string,
  document: TypedDocumentString<R, V>,
  variables: V,
  onData: (data: R) => void,
  onError: (message: string, code: string | undefined) => void,
): () => void {
  return socket(token).subscribe<R>(
    { query: document.toString(), variables: variables as Record<string, unknown> },
    {
      next: (result) => {
        if (result.errors?.length) {
          const first = result.errors[0]!;
          onError(first.message, (first.extensions as { code?: string } | undefined)?.code);
        } else if (result.data) onData(result.data);
      },
      error: (error) => {
        const closed = error as { code?: number; reason?: string };
        onError(
          closed.reason || (error instanceof Error ? error.message : 'the live connection closed'),
          closed.code === 4403 || closed.code === 4401 ? 'UNAUTHENTICATED' : CONNECTION_LOST,
        );
      },
      complete: () => undefined,
    },
  );
}

/** The code that ends a subscription which may have missed events (the server's feed lost its connection). */
export const FEED_INTERRUPTED = 'FEED_INTERRUPTED';
/** The WebSocket closed (network, server restart): not the server's code, this module's. */
const CONNECTION_LOST = 'CONNECTION_LOST';

/**
 * A subscription that outlives interruptions: FEED_INTERRUPTED, or its
 * connection lost. It subscribes again (sooner the first time, later while
 * refusals come at once). With `cursor` (the feeds with cursors: select
 * `cursor`, take `$after`), it resubscribes after the last event received and
 * misses nothing, so the page has nothing to re-read; without, it calls
 * `interrupted`, then `resumed` once subscribed again, so the page re-reads
 * with a query what it may have missed. Other errors end it, through
 * `error`. Returns the stop function.
 */
export function follow<R, V>(
  token: string,
  document: TypedDocumentString<R, V>,
  variables: V,
  handlers: {
    data(data: R): void;
    error(message: string, code: string | undefined): void;
    interrupted(): void;
    resumed(): void;
    /** The event's cursor, on a feed with cursors. */
    cursor?(data: R): string | null | undefined;
  },
): () => void {
  let stopped = false;
  let current: (() => void) | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let delay = 0;
  let last: string | undefined;
  const onData = (data: R) => {
    last = handlers.cursor?.(data) ?? last;
    handlers.data(data);
  };
  const start = (resuming: boolean) => {
    const startedAt = Date.now();
    const resumable = handlers.cursor !== undefined && last !== undefined;
    const vars = resumable ? ({ ...variables, after: last } as V) : variables;
    current = subscribe(token, document, vars, onData, (message, code) => {
      if (stopped) return;
      if (code !== FEED_INTERRUPTED && code !== CONNECTION_LOST) return handlers.error(message, code);
      // Refused within moments: the feed is still reconnecting, so wait longer each time (0.5 s up to 10 s).
      delay = resuming && Date.now() - startedAt < 2_000 ? Math.min(Math.max(delay * 2, 500), 10_000) : 500;
      if (handlers.cursor === undefined || last === undefined) handlers.interrupted();
      timer = setTimeout(() => start(true), delay);
    });
    if (resuming && !resumable) handlers.resumed();
  };
  start(false);
  return () => {
    stopped = true;
    clearTimeout(timer);
    current?.();
  };
}

/** The attempts of the newest messages, oldest first (the order the live list keeps). */
async function recentAttempts(token: string, appId: string, recipientId: string | undefined): Promise<LiveAttempt[]> {
  const { app } = await gql(token, RecentAttemptsDocument, { appId, recipientId });
  const all = (app?.messages.nodes ?? []).flatMap(({ attempts, ...message }) =>
    attempts.nodes.map((a) => ({ ...a, message, cursor: null })),
  );
  // Ids sort by creation time.
  return all.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** The live attempt feed: each attempt as it starts and as it ends, newest first. */
export function livePage(
  o: { token: string; appId: string; mode: Mode; messageBase: string; recipientId?: string },
  redraw: Redraw,
) {
  const attempts = new Map<string, LiveAttempt>();
  let state: 'connecting' | 'live' | 'interrupted' | 'error' = 'connecting';
  let problem: string | undefined;
  /** When the feed was last interrupted, and whether the list was read again since. */
  let interruption: { at: string; reloaded: boolean } | undefined;
  const show = (attempt: LiveAttempt) => {
    attempts.delete(attempt.id);
    attempts.set(attempt.id, attempt);
    while (attempts.size > 200) attempts.delete(attempts.keys().next().value!);
  };
  const variables: LiveAttemptsSubscriptionVariables = { appId: o.appId, recipientId: o.recipientId };
  let reads = 0;
  const stop = follow(o.token, LiveAttemptsDocument, variables, {
    // Resumed after the last attempt event on a lost connection: nothing missed, nothing to read again.
    cursor: ({ attemptUpdated }) => attemptUpdated.cursor,
    data: ({ attemptUpdated }) => {
      state = 'live';
      show(attemptUpdated);
      redraw();
    },
    error: (message, code) => {
      state = 'error';
      problem = code === 'UNAUTHENTICATED' ? 'This link has expired.' : message;
      redraw();
    },
    interrupted: () => {
      state = 'interrupted';
      // A read under way may finish before the feed is back; it must not mark the list as current.
      reads++;
      // Refusals while the feed reconnects are the same interruption.
      if (!interruption || interruption.reloaded) interruption = { at: new Date().toISOString(), reloaded: false };
      redraw();
    },
    resumed: () => {
      // Subscribed again: read the list again, as attempts made meanwhile never came through the feed.
      const read = ++reads;
      recentAttempts(o.token, o.appId, o.recipientId).then(
        (recent) => {
          if (read !== reads || state === 'error') return;
          const live = [...attempts.values()].filter((a) => !recent.some((r) => r.id === a.id));
          attempts.clear();
          // Events that came while reading are newer than the read.
          for (const a of [...recent, ...live]) show(a);
          if (interruption) interruption.reloaded = true;
          if (state === 'interrupted') state = 'live';
          redraw();
        },
        (error) => {
          if (read !== reads) return;
          problem = `The list could not be read again: ${toApiError(error).message}`;
          redraw();
        },
      );
    },
  });
  if (client?.connected) state = 'live';
  const onConnection = (connected: boolean) => {
    if (state !== 'error' && state !== 'interrupted') state = connected ? 'live' : 'connecting';
    redraw();
  };
  connectionListeners.add(onConnection);
  window.addEventListener(
    'hashchange',
    () => {
      stop();
      connectionListeners.delete(onConnection);
    },
    { once: true },
  );

  const back = o.mode === 'dashboard' ? appBackLink(o.token, o.appId, redraw) : undefined;
  return () => html`<section>
    ${back ? back() : nothing}
    <div class="section-head">
      <h2>Live attempts</h2>
      <span class="live-state live-${state}" role="status"
        >${state === 'live' ? '● live' : state === 'connecting' ? 'connecting…' : state === 'interrupted' ? 'interrupted, reconnecting…' : 'disconnected'}</span
      >
    </div>
    ${problem ? html`<p class="notice notice-error" role="alert">${problem}</p>` : nothing}
    ${
      interruption
        ? html`<p class="notice notice-warn" role="status" data-testid="feed-interrupted">
          The live feed was interrupted at ${time(interruption.at)}: attempts made meanwhile did not come through it.
          ${interruption.reloaded ? 'The list below was read again.' : 'Reading the list again…'}
        </p>`
        : nothing
    }
    ${
      attempts.size
        ? html`<ul class="cards">
          ${[...attempts.values()].reverse().map(
            (a) => html`<li class="card live-attempt" data-testid="live-attempt">
              <a class="card-link" href="${o.messageBase}/${a.message.id}">
                <code>${a.message.eventType}</code>
                ${badge(a.status)}
              </a>
              <p class="muted">
                message <span class="mono" data-testid="live-message-id">${a.message.messageId}</span>${a.message.test ? html` <span class="badge badge-test">test</span>` : nothing} ·
                ${o.mode === 'dashboard' ? html`<span data-testid="live-recipient">recipient <strong>${a.message.recipientId}</strong></span> · ` : nothing}<span class="url">${a.endpoint.url}</span>
                ${a.responseStatusCode != null ? html` · HTTP ${a.responseStatusCode}` : nothing}${a.durationMs != null ? ` · ${a.durationMs} ms` : ''} · ${time(a.createdAt)}
              </p>
              ${a.errorKind ? html`<p class="error-text">Failed: ${errorKindText(a.errorKind, a.responseStatusCode)}.</p>` : nothing}
            </li>`,
          )}
        </ul>`
        : empty('Waiting for attempts. Each delivery attempt appears here as it starts and as it ends.')
    }
  </section>`;
}

/**
 * Runs `work` for events that come in bursts (an attempt's start and end):
 * one run at a time, and one more if any came while it ran.
 */
export function coalesced(work: () => Promise<void>): () => Promise<void> {
  let running = false;
  let again = false;
  return async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        await work();
      } while (again);
    } finally {
      running = false;
    }
  };
}
