import { html, nothing } from 'lit-html';
import { repeat } from 'lit-html/directives/repeat.js';
import { gql } from './api.ts';
import { appBackLink } from './dashboard.ts';
import {
  CancelScheduledFromPortalDocument,
  DeliveryAttemptsDocument,
  type DeliveryStatus,
  EventTypeCatalogDocument,
  LiveAttemptsDocument,
  LiveMessagesDocument,
  MessageDeliveriesDocument,
  type MessageDeliveryFragment,
  MessageDetailDocument,
  MessageLogDocument,
  type MessageLogQuery,
  type PortalAttemptFragment,
  ResendFromPortalDocument,
} from './generated.ts';
import { follow } from './live.ts';
import { replayPanel } from './replay-panel.ts';
import {
  act,
  badge,
  empty,
  errorKindText,
  isoToLocal,
  loadMore,
  localToIso,
  type Mode,
  type Notice,
  notice,
  PagedList,
  pagedResource,
  pretty,
  type Redraw,
  readThrough,
  resource,
  show,
  time,
} from './ui.ts';

const STATUSES: DeliveryStatus[] = ['SCHEDULED', 'PENDING', 'SENDING', 'SUCCEEDED', 'FAILED', 'CANCELED'];

/** A scheduled send not yet due: when it goes. */
const scheduledFor = (deliverAt: string | null) =>
  deliverAt && Date.parse(deliverAt) > Date.now()
    ? html` <span class="badge badge-scheduled" data-testid="scheduled-for">scheduled for ${time(deliverAt)}</span>`
    : nothing;

export interface LogOptions {
  token: string;
  appId: string;
  mode: Mode;
  /** The hash of this log, e.g. #/messages; a message is at `${base}/${id}`. */
  base: string;
  /** Current filters, from the hash's query string. */
  filters: URLSearchParams;
  /** The dashboard filters by recipient too; the portal has one. */
  byRecipient: boolean;
}

type Summary = NonNullable<MessageLogQuery['app']>['messages']['nodes'][number];

export function messageLogPage(o: LogOptions, redraw: Redraw) {
  const f = {
    eventType: o.filters.get('eventType') || undefined,
    status: (STATUSES as string[]).includes(o.filters.get('status') ?? '')
      ? (o.filters.get('status') as DeliveryStatus)
      : undefined,
    since: o.filters.get('since') || undefined,
    until: o.filters.get('until') || undefined,
    recipientId: (o.byRecipient && o.filters.get('recipientId')) || undefined,
  };
  const catalog = resource(
    async () => (await gql(o.token, EventTypeCatalogDocument, { appId: o.appId })).app?.eventTypes ?? [],
    redraw,
  );
  const page = pagedResource<Summary>(
    async (after) => (await gql(o.token, MessageLogDocument, { appId: o.appId, first: 25, after, ...f })).app?.messages,
    redraw,
  );
  const apply = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const q = new URLSearchParams();
    for (const key of ['eventType', 'status', 'recipientId']) {
      const v = String(data.get(key) ?? '').trim();
      if (v) q.set(key, v);
    }
    for (const key of ['since', 'until']) {
      const v = localToIso(data.get(key));
      if (v) q.set(key, v);
    }
    location.hash = `${o.base}${q.size ? `?${q}` : ''}`;
  };
  const filtered = Object.values(f).some(Boolean);
  const back = o.mode === 'dashboard' ? appBackLink(o.token, o.appId, redraw) : undefined;
  const replay = replayPanel(
    {
      token: o.token,
      appId: o.appId,
      mode: o.mode,
      eventTypes: () => (catalog.data ?? []).map((t) => t.name),
      onDone: () => void page.reload(),
    },
    redraw,
  );
  // New messages are counted as they are sent and shown on request, so the list does not move under the reader.
  const fresh = new Set<string>();
  const stop = follow(
    o.token,
    LiveMessagesDocument,
    { appId: o.appId, recipientId: f.recipientId },
    {
      cursor: ({ messageCreated }) => messageCreated.cursor,
      data: ({ messageCreated }) => {
        if (f.eventType && messageCreated.eventType !== f.eventType) return;
        if (page.data?.items.some((m) => m.id === messageCreated.id)) return;
        fresh.add(messageCreated.id);
        redraw();
      },
      error: () => undefined,
      interrupted: () => undefined,
      resumed: () => undefined,
    },
  );
  window.addEventListener('hashchange', stop, { once: true });
  const showNew = () => {
    fresh.clear();
    void page.reload();
  };

  return () => html`<section>
    ${back ? back() : nothing}
    <h2>Messages</h2>
    ${
      fresh.size
        ? html`<button type="button" class="new-bar" data-testid="new-messages" @click=${showNew}>${fresh.size} new message${fresh.size === 1 ? '' : 's'}: show</button>`
        : nothing
    }
    <form class="filters" @submit=${apply}>
      <label>Event type
        <select name="eventType">
          <option value="">All</option>
          ${(catalog.data ?? []).map((t) => html`<option value=${t.name} ?selected=${t.name === f.eventType}>${t.name}</option>`)}
        </select>
      </label>
      <label>Delivery status
        <select name="status">
          <option value="">Any</option>
          ${STATUSES.map((s) => html`<option value=${s} ?selected=${s === f.status}>${s.toLowerCase()}</option>`)}
        </select>
      </label>
      ${o.byRecipient ? html`<label>Recipient<input name="recipientId" .value=${f.recipientId ?? ''} placeholder="customer id" /></label>` : nothing}
      <label>From<input type="datetime-local" name="since" .value=${isoToLocal(f.since)} /></label>
      <label>Until<input type="datetime-local" name="until" .value=${isoToLocal(f.until)} /></label>
      <div class="actions">
        <button type="submit">Filter</button>
        ${filtered ? html`<a class="button secondary" href=${o.base}>Clear</a>` : nothing}
      </div>
    </form>
    ${replay()}
    ${show(page, o.mode, (list) =>
      list.items.length
        ? html`<ul class="cards messages">
              ${list.items.map(
                (m) => html`<li class="card message">
                  <a class="card-link" href="${o.base}/${m.id}">
                    <code>${m.eventType}</code>${m.test ? html` <span class="badge badge-test">test</span>` : nothing}${scheduledFor(m.deliverAt)}
                    <span class="badges">${m.deliveries.nodes.length ? m.deliveries.nodes.map((d) => badge(d.status)) : html`<span class="muted">no deliveries</span>`}</span>
                  </a>
                  <p class="muted">${time(m.createdAt)}${o.byRecipient ? html` · ${m.recipientId}` : nothing} · <span class="mono">${m.messageId}</span></p>
                </li>`,
              )}
            </ul>
            ${loadMore(list)}`
        : empty(filtered ? 'No messages match these filters.' : 'No messages yet.'),
    )}
  </section>`;
}

/** One attempt: its outcome, and why it failed in words (the raw error below, except an operator's setting). */
export function attemptRow(a: PortalAttemptFragment, mode: Mode) {
  const why = errorKindText(a.errorKind, a.responseStatusCode);
  // The stored error of a refused address names the operator's setting; a customer is told the kind only.
  // An HTTP status says it all in the sentence above.
  const detail =
    a.error && a.errorKind !== 'http_status' && !(mode === 'portal' && a.errorKind === 'unsafe_address')
      ? a.error
      : undefined;
  return html`<li class="attempt" data-testid="attempt" data-id=${a.id}>
    <div class="attempt-head">
      ${badge(a.status)}
      <span>${a.responseStatusCode != null ? html`HTTP <strong>${a.responseStatusCode}</strong>` : nothing}</span>
      <span class="muted">${a.durationMs != null ? `${a.durationMs} ms` : ''} · ${a.trigger === 'MANUAL' ? 'manual' : 'scheduled'} · ${time(a.createdAt)}</span>
    </div>
    ${why ? html`<p class="error-text" data-testid="error-kind">Failed: ${why}.</p>` : nothing}
    ${detail && detail !== why ? html`<p class="muted small">${detail}</p>` : nothing}
    ${a.responseBody ? html`<details><summary>Response body</summary><pre>${a.responseBody}</pre></details>` : nothing}
  </li>`;
}

// First pages as MessageDetail and MessageDelivery ask for them; MAX_PAGE is the API's largest page (MAX_PAGE_SIZE in src/graphql/builder.ts).
const DELIVERIES_PAGE = 50;
const ATTEMPTS_PAGE = 20;
const MAX_PAGE = 100;
const byId = (item: { id: string }) => item.id;

export function messageDetailPage(
  o: { token: string; appId: string; mode: Mode; base: string; id: string },
  redraw: Redraw,
) {
  const attemptsPage = async (deliveryId: string, first: number, after: string | null) => {
    const { node } = await gql(o.token, DeliveryAttemptsDocument, { id: deliveryId, first, after });
    return node && 'attempts' in node ? node.attempts : undefined;
  };
  const deliveriesPage = async (first: number, after: string) =>
    (await gql(o.token, MessageDeliveriesDocument, { appId: o.appId, id: o.id, first, after })).message?.deliveries;
  const deliveries = new PagedList<MessageDeliveryFragment>((after) => deliveriesPage(DELIVERIES_PAGE, after), redraw);
  // Each delivery pages its own attempts, kept by delivery id across rereads of the message.
  const attempts = new Map<string, PagedList<PortalAttemptFragment>>();
  const attemptsOf = (d: MessageDeliveryFragment) => {
    let list = attempts.get(d.id);
    if (!list) {
      list = new PagedList<PortalAttemptFragment>((after) => attemptsPage(d.id, ATTEMPTS_PAGE, after), redraw).reset(
        d.attempts,
      );
      attempts.set(d.id, list);
    }
    return list;
  };
  // A reread asks for as many as are shown, in pages of at most the API's largest, so every item loaded is
  // read again (a status beyond the first pages does not go stale) and the pages loaded stay, each item once.
  const data = resource(async () => {
    const shown = Math.max(deliveries.items.length, DELIVERIES_PAGE);
    const message = (
      await gql(o.token, MessageDetailDocument, { appId: o.appId, id: o.id, deliveries: Math.min(shown, MAX_PAGE) })
    ).message;
    if (!message) return message;
    const read = await readThrough(message.deliveries, shown, MAX_PAGE, deliveriesPage);
    const fresh = await Promise.all(
      read.nodes.map(async (d) => {
        const loaded = attempts.get(d.id)?.items.length ?? 0;
        // The first page came with the delivery; only a delivery showing more is read again on its own.
        if (loaded <= ATTEMPTS_PAGE) return d.attempts;
        const first = await attemptsPage(d.id, Math.min(loaded, MAX_PAGE), null);
        return first ? readThrough(first, loaded, MAX_PAGE, (n, after) => attemptsPage(d.id, n, after)) : d.attempts;
      }),
    );
    read.nodes.forEach((d, i) => {
      const list = attempts.get(d.id);
      if (list) list.refresh(fresh[i], byId);
      else attemptsOf(d);
    });
    deliveries.refresh(read, byId);
    return message;
  }, redraw);
  let resendNotice: Notice | undefined;
  let busy = false;
  // Attempts of this message appear as they start and end: each live event rereads the message.
  let reloading = false;
  let again = false;
  const refresh = async () => {
    if (reloading) {
      again = true;
      return;
    }
    reloading = true;
    do {
      again = false;
      await data.reload();
    } while (again);
    reloading = false;
  };
  // Subscribed again after an interruption of the feed, it rereads too: attempts made meanwhile never came through it.
  const stop = follow(
    o.token,
    LiveAttemptsDocument,
    { appId: o.appId, messageId: o.id },
    {
      cursor: ({ attemptUpdated }) => attemptUpdated.cursor,
      data: () => void refresh(),
      error: () => undefined,
      interrupted: () => undefined,
      resumed: () => void refresh(),
    },
  );
  window.addEventListener('hashchange', stop, { once: true });
  const resend = (endpointId?: string) =>
    act(
      (n) => (resendNotice = n),
      redraw,
      async () => {
        busy = true;
        try {
          const { resendMessage } = await gql(o.token, ResendFromPortalDocument, {
            input: { appId: o.appId, messageId: o.id, endpointId },
          });
          await refresh();
          return resendMessage.length === 1
            ? 'Resent: a new attempt is on its way.'
            : `Resent to ${resendMessage.length} endpoints.`;
        } finally {
          busy = false;
        }
      },
    );
  const cancelScheduled = () =>
    act(
      (n) => (resendNotice = n),
      redraw,
      async () => {
        busy = true;
        try {
          const { cancelScheduledMessage } = await gql(o.token, CancelScheduledFromPortalDocument, {
            input: { appId: o.appId, messageId: o.id },
          });
          await refresh();
          return `Canceled: ${cancelScheduledMessage.canceled.length} scheduled deliver${cancelScheduledMessage.canceled.length === 1 ? 'y' : 'ies'} will not be sent.`;
        } finally {
          busy = false;
        }
      },
    );
  const scheduled = () => deliveries.items.some((d) => d.status === 'SCHEDULED');
  return () => html`<section>
    <div class="section-head">
      <p><a href=${o.base}>← Messages</a></p>
      <span class="actions">
        <button class="secondary" @click=${() => void refresh()}>Refresh</button>
        ${scheduled() ? html`<button class="secondary" ?disabled=${busy} @click=${() => void cancelScheduled()}>Cancel scheduled send</button>` : nothing}
        <button ?disabled=${busy} @click=${() => void resend()}>Resend</button>
      </span>
    </div>
    ${notice(resendNotice)}
    ${show(data, o.mode, (m) =>
      !m
        ? empty('This message does not exist.')
        : html`<h2><code>${m.eventType}</code>${m.test ? html` <span class="badge badge-test">test</span>` : nothing}${scheduledFor(m.deliverAt)}</h2>
            <p class="muted">${time(m.createdAt)} · id <span class="mono">${m.messageId}</span>${o.mode === 'dashboard' ? html` · recipient ${m.recipientId}` : nothing}</p>
            <div class="panel">
              <h3>Data</h3>
              <pre class="json">${pretty(m.data)}</pre>
            </div>
            <div class="panel">
              <h3>Deliveries</h3>
              ${
                deliveries.items.length
                  ? html`<ul class="deliveries">
                    ${repeat(
                      deliveries.items,
                      byId,
                      (d) => html`<li class="delivery" data-testid="delivery" data-id=${d.id}>
                        <div class="delivery-head">
                          ${badge(d.status)} <span class="url">${d.endpoint.url}</span>
                          ${
                            d.endpoint.disabled
                              ? html`<span class="muted">(endpoint disabled)</span>`
                              : html`<button class="secondary small" ?disabled=${busy} @click=${() => void resend(d.endpoint.id)}>Resend here</button>`
                          }
                        </div>
                        <p class="muted">${d.attemptCount} attempt(s)${d.nextAttemptAt ? html` · next try ${time(d.nextAttemptAt)}` : nothing}</p>
                        ${
                          d.heldBy
                            ? html`<p class="muted" data-testid="held-by">${d.status === 'PENDING' && !d.nextAttemptAt ? 'Waiting in order behind' : 'Held back in order behind'} <a href="#/messages/${d.heldBy.message.id}"><code>${d.heldBy.message.messageId}</code></a> (${d.heldBy.status.toLowerCase()})</p>`
                            : nothing
                        }
                        ${
                          attemptsOf(d).items.length
                            ? html`<ul class="attempts">${repeat(attemptsOf(d).items, byId, (a) => attemptRow(a, o.mode))}</ul>${loadMore(attemptsOf(d), 'Older attempts')}`
                            : html`<p class="muted">No attempt yet.</p>`
                        }
                      </li>`,
                    )}
                  </ul>
                  ${loadMore(deliveries, 'More deliveries')}`
                  : html`<p class="muted">No endpoint was subscribed to this event when it was sent.</p>`
              }
            </div>`,
    )}
  </section>`;
}
