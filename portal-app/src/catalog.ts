import { html, nothing } from 'lit-html';
import { repeat } from 'lit-html/directives/repeat.js';
import { gql } from './api.ts';
import type { PortalContext } from './endpoints.ts';
import {
  EventTypeCatalogDocument,
  LiveAttemptsDocument,
  MessageDetailDocument,
  type PortalAttemptFragment,
  PortalViewerDocument,
  SendTestMessageDocument,
} from './generated.ts';
import { follow } from './live.ts';
import { attemptRow } from './messages.ts';
import { empty, focusError, pretty, type Redraw, resource, show, toApiError } from './ui.ts';

/** Ids sort by creation time. */
const newestFirst = (a: { id: string }, b: { id: string }) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/** The event catalog: each event type the app sends, with its description, schema and an example. */
export function catalogPage(ctx: PortalContext, redraw: Redraw) {
  const catalog = resource(
    async () => (await gql(ctx.token, EventTypeCatalogDocument, { appId: ctx.appId })).app?.eventTypes ?? [],
    redraw,
  );
  return () => html`<section>
    <h2>Event types</h2>
    <p class="muted">What ${ctx.appName} sends. Subscribe an endpoint to some of them, or to all (the default).</p>
    ${show(catalog, 'portal', (types) =>
      types.length
        ? html`<ul class="cards catalog">
            ${types.map(
              (t) => html`<li class="card event-type" id=${`type-${t.name}`} data-testid="event-type">
                <div class="row-head">
                  <h3><code>${t.name}</code></h3>
                  <a class="button secondary small" href="#/test?eventType=${encodeURIComponent(t.name)}">Send a test</a>
                </div>
                ${t.description ? html`<p>${t.description}</p>` : html`<p class="muted">No description.</p>`}
                <details open>
                  <summary>Example</summary>
                  <pre class="json" data-testid="example">${pretty(t.example)}</pre>
                </details>
                ${
                  t.schema
                    ? html`<details><summary>JSON Schema</summary><pre class="json" data-testid="schema">${pretty(t.schema)}</pre></details>`
                    : html`<p class="muted">No schema: any JSON may be sent.</p>`
                }
              </li>`,
            )}
          </ul>`
        : empty('This application has no event types yet.'),
    )}
  </section>`;
}

/**
 * Send a test event: pick an event type (its example fills the data), an endpoint or all, send, and watch
 * the attempts of that message arrive live.
 */
export function testEventPage(ctx: PortalContext, query: URLSearchParams, redraw: Redraw) {
  const data = resource(async () => {
    const [catalog, viewer] = await Promise.all([
      gql(ctx.token, EventTypeCatalogDocument, { appId: ctx.appId }),
      gql(ctx.token, PortalViewerDocument),
    ]);
    return { types: catalog.app?.eventTypes ?? [], endpoints: viewer.viewer.recipient?.endpoints.nodes ?? [] };
  }, redraw);
  let eventType = query.get('eventType') ?? '';
  let endpointId = query.get('endpoint') ?? '';
  let body: string | undefined;
  let error: { text: string; field: 'data' | 'eventType' | 'endpoint' | undefined } | undefined;
  let busy = false;
  let sent: { id: string; messageId: string; eventType: string } | undefined;
  const attempts = new Map<string, PortalAttemptFragment>();
  // Subscribed from the start, so the first attempt of a test sent later is not missed; only the sent message's are kept.
  const stop = follow(
    ctx.token,
    LiveAttemptsDocument,
    { appId: ctx.appId },
    {
      data: ({ attemptUpdated }) => {
        if (attemptUpdated.message.id !== sent?.id) return;
        attempts.set(attemptUpdated.id, attemptUpdated);
        redraw();
      },
      error: () => undefined,
      interrupted: () => undefined,
      resumed: () => void readAttempts(),
    },
  );
  window.addEventListener('hashchange', stop, { once: true });
  /** The sent message's attempts as stored: those made before the feed delivered them are shown too. */
  const readAttempts = async () => {
    const id = sent?.id;
    if (!id) return;
    const { message } = await gql(ctx.token, MessageDetailDocument, { appId: ctx.appId, id, deliveries: 10 });
    for (const d of message?.deliveries.nodes ?? [])
      for (const a of d.attempts.nodes) {
        const known = attempts.get(a.id);
        // A finished attempt wins over its SENDING event.
        if (!known || known.status === 'SENDING') attempts.set(a.id, a);
      }
    redraw();
  };

  const exampleOf = (name: string) => data.data?.types.find((t) => t.name === name)?.example;
  const submit = async (e: Event) => {
    e.preventDefault();
    error = undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(body ?? pretty(exampleOf(eventType) ?? {}));
    } catch {
      error = { text: 'The data is not valid JSON.', field: 'data' };
      redraw();
      focusError('test-error');
      return;
    }
    busy = true;
    redraw();
    try {
      const { sendTestMessage } = await gql(ctx.token, SendTestMessageDocument, {
        input: { eventType, data: parsed, endpointId: endpointId || undefined },
      });
      sent = sendTestMessage.message;
      attempts.clear();
      void readAttempts().catch(() => undefined);
    } catch (err) {
      const apiError = toApiError(err);
      const field =
        apiError.code === 'INVALID_PAYLOAD' || apiError.code === 'PAYLOAD_TOO_LARGE'
          ? 'data'
          : apiError.code === 'UNKNOWN_EVENT_TYPE'
            ? 'eventType'
            : apiError.code === 'ENDPOINT_DISABLED' || apiError.code === 'NOT_FOUND'
              ? 'endpoint'
              : undefined;
      error = { text: apiError.message, field };
      focusError('test-error');
    }
    busy = false;
    redraw();
  };
  const invalid = (field: string) =>
    error?.field === field ? { 'aria-invalid': 'true', describedby: 'test-error' } : undefined;

  return () => html`<section>
    <h2>Send a test event</h2>
    <p class="muted">Sends an event to your endpoints now, marked as a test, so you can check your receiver. It is signed like any webhook.</p>
    ${show(data, 'portal', ({ types, endpoints }) => {
      if (!types.length) return empty('This application has no event types yet, so there is nothing to test.');
      if (!endpoints.length)
        return empty(
          'Add an endpoint first: a test event goes to your endpoints.',
          html`<a class="button" href="#/endpoints/new">Add endpoint</a>`,
        );
      if (!types.some((t) => t.name === eventType)) eventType = types[0]!.name;
      const current = body ?? pretty(exampleOf(eventType) ?? {});
      return html`<form class="form" aria-label="Send a test event" @submit=${submit}>
        <label>Event type
          <select name="eventType" aria-invalid=${invalid('eventType')?.['aria-invalid'] ?? 'false'} aria-describedby=${invalid('eventType')?.describedby ?? nothing} @change=${(
            e: Event,
          ) => {
            eventType = (e.target as HTMLSelectElement).value;
            body = undefined;
            redraw();
          }}>
            ${types.map((t) => html`<option value=${t.name} ?selected=${t.name === eventType}>${t.name}</option>`)}
          </select>
        </label>
        ${(() => {
          const d = types.find((t) => t.name === eventType)?.description;
          return d ? html`<p class="muted hint">${d}</p>` : nothing;
        })()}
        <label>Endpoint
          <select name="endpoint" aria-invalid=${invalid('endpoint')?.['aria-invalid'] ?? 'false'} aria-describedby=${invalid('endpoint')?.describedby ?? nothing} @change=${(
            e: Event,
          ) => {
            endpointId = (e.target as HTMLSelectElement).value;
          }}>
            <option value="" ?selected=${!endpointId}>Every enabled endpoint that takes this event type</option>
            ${endpoints.map((ep) => html`<option value=${ep.id} ?selected=${ep.id === endpointId} ?disabled=${ep.disabled}>${ep.url}${ep.disabled ? ' (disabled)' : ''}</option>`)}
          </select>
        </label>
        <label>Data (JSON)
          <textarea name="data" rows="10" spellcheck="false" class="mono" aria-invalid=${invalid('data')?.['aria-invalid'] ?? 'false'} aria-describedby=${invalid('data')?.describedby ?? nothing} .value=${current} @input=${(
            e: Event,
          ) => {
            body = (e.target as HTMLTextAreaElement).value;
          }}></textarea>
        </label>
        <p class="muted hint">Filled with the event type's example; edit it as you like. It must match the event type's schema.</p>
        ${error ? html`<p class="notice notice-error" id="test-error" role="alert" tabindex="-1">${error.text}</p>` : nothing}
        <div class="actions">
          <button type="submit" ?disabled=${busy}>${busy ? 'Sending…' : 'Send test event'}</button>
          ${
            body !== undefined
              ? html`<button type="button" class="secondary" @click=${() => {
                  body = undefined;
                  redraw();
                }}>Reset to the example</button>`
              : nothing
          }
        </div>
      </form>`;
    })}
    ${
      sent
        ? html`<div class="panel" data-testid="test-result">
            <h3>Sent <code>${sent.eventType}</code></h3>
            <p class="muted">Message <a href="#/messages/${sent.id}"><span class="mono">${sent.messageId}</span></a>. Attempts appear here as they happen.</p>
            ${
              attempts.size
                ? html`<ul class="attempts">${repeat(
                    [...attempts.values()].sort(newestFirst),
                    (a) => a.id,
                    (a) => attemptRow(a, 'portal'),
                  )}</ul>`
                : html`<p class="state loading" role="status">Waiting for the first attempt…</p>`
            }
          </div>`
        : nothing
    }
  </section>`;
}
