import { createClient, type Client } from 'graphql-ws/client';
import { html, nothing } from 'lit-html';
import type { LiveAttemptsSubscription, LiveAttemptsSubscriptionVariables, TypedDocumentString } from './generated.ts';
import { LiveAttemptsDocument } from './generated.ts';
import { badge, empty, time, type Mode, type Redraw } from './ui.ts';

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
    retryAttempts: 5,
  });
  const entry = { token, ws, connected: false };
  ws.on('connected', () => {
    entry.connected = true;
    connectionListeners.forEach((l) => l(true));
  });
  ws.on('closed', () => {
    entry.connected = false;
    connectionListeners.forEach((l) => l(false));
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
        onError(closed.reason || (error instanceof Error ? error.message : 'the live connection closed'), closed.code === 4403 || closed.code === 4401 ? 'UNAUTHENTICATED' : undefined);
      },
      complete: () => undefined,
    },
  );
}

/** The live attempt feed: each attempt as it starts and as it ends, newest first. */
export function livePage(o: { token: string; appId: string; mode: Mode; messageBase: string; recipientId?: string }, redraw: Redraw) {
  const attempts = new Map<string, LiveAttempt>();
  let state: 'connecting' | 'live' | 'error' = 'connecting';
  let problem: string | undefined;
  const variables: LiveAttemptsSubscriptionVariables = { appId: o.appId, recipientId: o.recipientId };
  const stop = subscribe(
    o.token,
    LiveAttemptsDocument,
    variables,
    ({ attemptUpdated }) => {
      state = 'live';
      attempts.delete(attemptUpdated.id);
      attempts.set(attemptUpdated.id, attemptUpdated);
      while (attempts.size > 200) attempts.delete(attempts.keys().next().value!);
      redraw();
    },
    (message, code) => {
      state = 'error';
      problem = code === 'UNAUTHENTICATED' ? 'This link has expired.' : message;
      redraw();
    },
  );
  if (client?.connected) state = 'live';
  const onConnection = (connected: boolean) => {
    if (state !== 'error') state = connected ? 'live' : 'connecting';
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

  return () => html`<section>
    <div class="section-head">
      <h2>Live attempts</h2>
      <span class="live-state live-${state}" role="status">${state === 'live' ? '● live' : state === 'connecting' ? 'connecting…' : 'disconnected'}</span>
    </div>
    ${problem ? html`<p class="notice notice-error" role="alert">${problem}</p>` : nothing}
    ${attempts.size
      ? html`<ul class="cards">
          ${[...attempts.values()].reverse().map(
            (a) => html`<li class="card live-attempt" data-testid="live-attempt">
              <a class="card-link" href="${o.messageBase}/${a.message.id}">
                <code>${a.message.eventType}</code>
                ${badge(a.status)}
              </a>
              <p class="muted">
                <span class="url">${a.endpoint.url}</span>
                ${a.responseStatusCode != null ? html` · HTTP ${a.responseStatusCode}` : nothing}${a.durationMs != null ? ` · ${a.durationMs} ms` : ''} · ${time(a.createdAt)}
              </p>
              ${a.error ? html`<p class="error-text">${a.error}</p>` : nothing}
            </li>`,
          )}
        </ul>`
      : empty('Waiting for attempts. Each delivery attempt appears here as it starts and as it ends.')}
  </section>`;
}
