import { html, nothing } from 'lit-html';
import { gql, session } from './api.ts';
import {
  DashboardAppDocument,
  DashboardAppNameDocument,
  type DashboardAppQuery,
  DashboardAppsDocument,
  DashboardArchiveEventTypeDocument,
  DashboardCreateAppDocument,
  DashboardCreateEventTypeDocument,
  DashboardCreatePortalSessionDocument,
  DashboardRecipientEndpointsDocument,
  type DashboardRecipientFragment,
  DashboardRecipientsDocument,
  DashboardUnarchiveEventTypeDocument,
  DashboardUpdateAppDocument,
  DashboardViewerDocument,
  type PortalEndpointFragment,
  type UpdateAppInput,
} from './generated.ts';
import {
  act,
  badge,
  copyButton,
  empty,
  loadMore,
  type Notice,
  notice,
  PagedList,
  pagedResource,
  pretty,
  type Redraw,
  resource,
  show,
  time,
  toApiError,
} from './ui.ts';

const RECIPIENTS_PAGE = 50;

/** "App Billing", linking back to the app, for the dashboard's pages under an app (messages, live). */
export function appBackLink(apiKey: string, appId: string, redraw: Redraw) {
  const app = resource(async () => (await gql(apiKey, DashboardAppNameDocument, { id: appId })).app, redraw);
  return () =>
    html`<p class="app-back" data-testid="app-back"><a href="#/dashboard/apps/${appId}">← ${app.data?.name ?? 'App'}</a> <span class="muted mono">${appId}</span></p>`;
}

type App = NonNullable<DashboardAppQuery['app']>;

export function signInPage(redraw: Redraw, onSignedIn: () => void) {
  let n: Notice | undefined;
  let busy = false;
  const submit = async (e: Event) => {
    e.preventDefault();
    const key = String(new FormData(e.currentTarget as HTMLFormElement).get('apiKey') ?? '').trim();
    busy = true;
    n = undefined;
    redraw();
    try {
      const { viewer } = await gql(key, DashboardViewerDocument);
      if (viewer.kind !== 'OPERATOR') throw new Error('That is a portal token, not an API key.');
      session.signIn(key);
      onSignedIn();
    } catch (error) {
      const apiError = toApiError(error);
      n = {
        kind: 'error',
        text: apiError.code === 'UNAUTHENTICATED' ? 'That API key is not valid.' : apiError.message,
      };
    }
    busy = false;
    redraw();
  };
  return () => html`<section class="narrow">
    <h2>Operator sign-in</h2>
    <p class="muted">Your API key (<code>dk_…</code>) stays in this browser tab only and is never put in a URL.</p>
    <form class="form" @submit=${submit}>
      <label>API key<input name="apiKey" type="password" autocomplete="off" required placeholder="dk_…" /></label>
      ${notice(n)}
      <div class="actions"><button type="submit" ?disabled=${busy}>Sign in</button></div>
    </form>
  </section>`;
}

export function appsPage(apiKey: string, redraw: Redraw) {
  let n: Notice | undefined;
  const apps = pagedResource(async (after) => (await gql(apiKey, DashboardAppsDocument, { after })).apps, redraw);
  const create = (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const name = String(new FormData(form).get('name') ?? '');
    void act(
      (x) => (n = x),
      redraw,
      async () => {
        await gql(apiKey, DashboardCreateAppDocument, { input: { name } });
        form.reset();
        await apps.reload();
        return `App ${name} created.`;
      },
    );
  };
  return () => html`<section>
    <h2>Apps</h2>
    ${show(apps, 'dashboard', (list) =>
      list.items.length
        ? html`<ul class="cards">${list.items.map((a) => html`<li class="card"><a class="card-link" href="#/dashboard/apps/${a.id}"><strong>${a.name}</strong><span class="mono muted">${a.id}</span></a></li>`)}</ul>
            ${loadMore(list, 'More apps')}`
        : empty('No apps yet. Create one below.'),
    )}
    <div class="panel">
      <h3>New app</h3>
      <form class="form inline" @submit=${create}>
        <label>Name<input name="name" required maxlength="200" placeholder="Billing events" /></label>
        <div class="actions"><button type="submit">Create app</button></div>
      </form>
      ${notice(n)}
    </div>
  </section>`;
}

/** A number as typed; whether it is an acceptable value is the API's to say. */
function wholeNumber(text: string, unit: string): number {
  if (!/^-?\d+$/.test(text)) throw new Error(`"${text}" is not a whole number of ${unit}.`);
  return Number(text);
}

/** "5, 300, 1800" as a list; empty gives [], which the API takes as the default schedule. */
const parseSchedule = (raw: string) =>
  raw
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => wholeNumber(part, 'seconds'));

export function appPage(apiKey: string, appId: string, redraw: Redraw) {
  let etNotice: Notice | undefined;
  let settingsNotice: Notice | undefined;
  let saving = false;
  const links = new Map<string, { url?: string; expiresAt?: string; notice?: Notice }>();
  const app = resource(async () => (await gql(apiKey, DashboardAppDocument, { id: appId })).app, redraw);
  const recipients = pagedResource(
    async (after) =>
      (await gql(apiKey, DashboardRecipientsDocument, { appId, first: RECIPIENTS_PAGE, after })).app?.recipients,
    redraw,
  );
  // Each recipient row pages its own endpoints; a reload brings new row objects, so their lists start over.
  const endpointLists = new WeakMap<DashboardRecipientFragment, PagedList<PortalEndpointFragment>>();
  const endpointsOf = (r: DashboardRecipientFragment) => {
    let list = endpointLists.get(r);
    if (!list) {
      const load = async (after: string) =>
        (await gql(apiKey, DashboardRecipientEndpointsDocument, { appId, recipientId: r.recipientId, after })).recipient
          ?.endpoints;
      list = new PagedList(load, redraw).reset(r.endpoints);
      endpointLists.set(r, list);
    }
    return list;
  };

  const saveSettings = (e: Event, a: App) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    saving = true;
    void act(
      (x) => (settingsNotice = x),
      redraw,
      async () => {
        try {
          // Only what changed is sent: saving a new name must not freeze the default schedule into an override.
          const input: UpdateAppInput = { id: appId };
          const name = String(data.get('name') ?? '');
          if (name !== a.name) input.name = name;
          const schedule = parseSchedule(String(data.get('retrySchedule') ?? ''));
          if (schedule.join(',') !== a.retrySchedule.join(',')) input.retrySchedule = schedule;
          // Empty restores the default timeout.
          const rawTimeout = String(data.get('attemptTimeoutMs') ?? '').trim();
          const timeout = rawTimeout ? wholeNumber(rawTimeout, 'milliseconds') : null;
          if (timeout !== a.attemptTimeoutMs) input.attemptTimeoutMs = timeout;
          await gql(apiKey, DashboardUpdateAppDocument, { input });
          await app.reload();
          return 'Settings saved.';
        } finally {
          saving = false;
        }
      },
    );
  };
  const createEventType = (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const data = new FormData(form);
    void act(
      (x) => (etNotice = x),
      redraw,
      async () => {
        const raw = String(data.get('schema') ?? '').trim();
        let schema: unknown;
        if (raw) {
          try {
            schema = JSON.parse(raw);
          } catch {
            throw new Error('The schema is not valid JSON.');
          }
        }
        const name = String(data.get('name') ?? '').trim();
        await gql(apiKey, DashboardCreateEventTypeDocument, {
          input: { appId, name, description: String(data.get('description') ?? '').trim() || null, schema },
        });
        form.reset();
        await app.reload();
        return `Event type ${name} created.`;
      },
    );
  };
  const archive = (name: string) => {
    if (!confirm(`Archive ${name}? Sending it will be refused, and endpoints can no longer subscribe to it.`)) return;
    void act(
      (x) => (etNotice = x),
      redraw,
      async () => {
        await gql(apiKey, DashboardArchiveEventTypeDocument, { input: { appId, name } });
        await app.reload();
        return `${name} archived.`;
      },
    );
  };
  const unarchive = (name: string) =>
    act(
      (x) => (etNotice = x),
      redraw,
      async () => {
        await gql(apiKey, DashboardUnarchiveEventTypeDocument, { input: { appId, name } });
        await app.reload();
        return `${name} is active again.`;
      },
    );
  const portalLink = async (recipientId: string) => {
    const entry = { notice: undefined as Notice | undefined } as { url?: string; expiresAt?: string; notice?: Notice };
    links.set(recipientId, entry);
    redraw();
    try {
      const { createPortalSession } = await gql(apiKey, DashboardCreatePortalSessionDocument, {
        input: { appId, recipientId },
      });
      entry.url = createPortalSession.url;
      entry.expiresAt = createPortalSession.expiresAt;
    } catch (error) {
      entry.notice = { kind: 'error', text: toApiError(error).message };
    }
    redraw();
  };

  return () => html`<section>
    <p><a href="#/dashboard">← Apps</a></p>
    ${show(app, 'dashboard', (a) =>
      !a
        ? empty('This app does not exist.')
        : html`<div class="section-head">
              <h2>${a.name}</h2>
              <span class="actions">
                <a class="button secondary" href="#/dashboard/apps/${a.id}/messages">Messages</a>
                <a class="button secondary" href="#/dashboard/apps/${a.id}/live">Live attempts</a>
              </span>
            </div>
            <p class="muted"><span class="mono">${a.id}</span> · retries after ${a.retrySchedule.join(', ')} s · timeout ${a.attemptTimeoutMs} ms</p>
            <div class="panel">
              <h3>Settings</h3>
              <form class="form" aria-label="App settings" @submit=${(e: Event) => saveSettings(e, a)}>
                <label>Name<input name="name" .value=${a.name} /></label>
                <label>Retry schedule (seconds)<input name="retrySchedule" .value=${a.retrySchedule.join(', ')} inputmode="numeric" aria-describedby="retry-help" /></label>
                <p class="muted hint" id="retry-help">Delays between tries after the first, comma-separated, e.g. <code>5, 300, 1800</code>. Empty restores the default schedule.</p>
                <label>Attempt timeout (ms)<input name="attemptTimeoutMs" .value=${String(a.attemptTimeoutMs)} inputmode="numeric" aria-describedby="timeout-help" /></label>
                <p class="muted hint" id="timeout-help">How long one try may take. Empty restores the default.</p>
                ${notice(settingsNotice)}
                <div class="actions"><button type="submit" ?disabled=${saving}>${saving ? 'Saving…' : 'Save settings'}</button></div>
              </form>
            </div>
            <div class="panel">
              <h3>Event types</h3>
              ${
                a.eventTypes.length
                  ? html`<ul class="rows">
                    ${a.eventTypes.map(
                      (t) => html`<li class=${t.archived ? 'archived' : ''}>
                        <div class="row-head"><code>${t.name}</code> ${t.archived ? html`${badge('archived')} <button class="secondary small" @click=${() => void unarchive(t.name)}>Unarchive</button>` : html`<button class="secondary small" @click=${() => archive(t.name)}>Archive</button>`}</div>
                        ${t.description ? html`<p class="muted">${t.description}</p>` : nothing}
                        ${t.schema ? html`<details><summary>Schema</summary><pre class="json">${pretty(t.schema)}</pre></details>` : nothing}
                      </li>`,
                    )}
                  </ul>`
                  : html`<p class="muted">No event types yet.</p>`
              }
              <form class="form" @submit=${createEventType}>
                <h4>New event type</h4>
                <label>Name<input name="name" required placeholder="invoice.paid" /></label>
                <label>Description<input name="description" placeholder="An invoice was paid." /></label>
                <label>JSON Schema (optional)<textarea name="schema" rows="4" placeholder='{"type": "object"}'></textarea></label>
                <div class="actions"><button type="submit">Create event type</button></div>
              </form>
              ${notice(etNotice)}
            </div>
            <div class="panel">
              <h3>Recipients</h3>
              ${show(recipients, 'dashboard', (list) =>
                list.items.length
                  ? html`<ul class="rows">
                        ${list.items.map((r) => {
                          const link = links.get(r.recipientId);
                          const endpoints = endpointsOf(r);
                          return html`<li class="recipient">
                            <div class="row-head">
                              <strong>${r.recipientId}</strong>
                              <span>
                                <a class="button secondary small" href="#/dashboard/apps/${a.id}/messages?recipientId=${encodeURIComponent(r.recipientId)}">Messages</a>
                                <button class="small" @click=${() => void portalLink(r.recipientId)}>Portal link</button>
                              </span>
                            </div>
                            ${
                              link?.url
                                ? html`<p class="portal-link"><input readonly aria-label="Portal link" .value=${link.url} @focus=${(e: Event) => (e.target as HTMLInputElement).select()} />
                                  ${copyButton(link.url, 'Copy the portal link', redraw)} <a href=${link.url} target="_blank" rel="noopener">Open</a> <span class="muted">valid until ${time(link.expiresAt)}</span></p>`
                                : nothing
                            }
                            ${notice(link?.notice)}
                            ${
                              endpoints.items.length
                                ? html`<ul class="sub">${endpoints.items.map((e) => html`<li><span class="url">${e.url}</span> ${e.disabled ? badge('disabled') : badge('enabled')} <span class="muted">${e.eventTypes.join(', ') || 'all event types'}</span></li>`)}</ul>
                                  ${loadMore(endpoints, 'More endpoints')}`
                                : html`<p class="muted">No endpoints.</p>`
                            }
                          </li>`;
                        })}
                      </ul>
                      ${loadMore(list)}`
                  : html`<p class="muted">No recipients yet: they appear with their first message, endpoint or portal link.</p>`,
              )}
              <form class="form inline" @submit=${(e: Event) => {
                e.preventDefault();
                const recipientId = String(
                  new FormData(e.currentTarget as HTMLFormElement).get('recipientId') ?? '',
                ).trim();
                if (recipientId) void portalLink(recipientId).then(() => recipients.reload());
              }}>
                <label>Portal link for recipient<input name="recipientId" required placeholder="customer_123" /></label>
                <div class="actions"><button type="submit">Create link</button></div>
              </form>
              ${[...links]
                .filter(([id]) => !recipients.data?.items.some((r) => r.recipientId === id))
                .map(([id, link]) =>
                  link.url
                    ? html`<p class="portal-link">${id}: <input readonly aria-label="Portal link" .value=${link.url} /> ${copyButton(link.url, 'Copy the portal link', redraw)}</p>`
                    : notice(link.notice),
                )}
            </div>`,
    )}
  </section>`;
}
