import { html, nothing, type TemplateResult } from 'lit-html';
import { gql } from './api.ts';
import { recentDeliveries } from './deliveries.ts';
import {
  CreatePortalEndpointDocument,
  DeletePortalEndpointDocument,
  EndpointDetailDocument,
  type EndpointDetailQuery,
  EndpointSecretDocument,
  EventTypeCatalogDocument,
  type EventTypeCatalogQuery,
  type PortalEndpointFragment,
  PortalViewerDocument,
  RecoverFromPortalDocument,
  RotatePortalEndpointSecretDocument,
  UpdatePortalEndpointDocument,
} from './generated.ts';
import { healthPanel } from './health.ts';
import {
  act,
  badge,
  copyButton,
  empty,
  focusError,
  isoToLocal,
  localToIso,
  type Notice,
  notice,
  type Redraw,
  resource,
  show,
} from './ui.ts';

/** Who the portal acts for: one recipient of one app. */
export interface PortalContext {
  token: string;
  appId: string;
  appName: string;
  recipientUid: string;
  /** The app lets customers set their endpoints' rate limit. */
  canSetRateLimit: boolean;
}

const go = (hash: string) => {
  location.hash = hash;
};

function endpointCard(e: PortalEndpointFragment): TemplateResult {
  return html`<li class="card endpoint">
    <a class="card-link" href="#/endpoints/${e.id}">
      <span class="url">${e.url}</span>
      ${e.disabled ? badge('disabled') : badge('enabled')}
    </a>
    ${e.description ? html`<p class="muted">${e.description}</p>` : nothing}
    ${e.disabled && e.disabledReason ? html`<p class="muted">Disabled: ${e.disabledReason}</p>` : nothing}
    ${e.rateLimit != null || e.ordering === 'FIFO' ? html`<p class="muted" data-testid="controls">${[e.rateLimit != null ? `at most ${e.rateLimit} per second` : '', e.ordering === 'FIFO' ? 'in order, one at a time' : ''].filter(Boolean).join(' · ')}</p>` : nothing}
    <p class="chips">${e.eventTypes.length ? e.eventTypes.map((t) => html`<span class="chip">${t}</span>`) : html`<span class="chip">all event types</span>`}</p>
  </li>`;
}

export function endpointsPage(ctx: PortalContext, redraw: Redraw) {
  const list = resource(
    async () => (await gql(ctx.token, PortalViewerDocument)).viewer.recipient?.endpoints.nodes ?? [],
    redraw,
  );
  return () => html`<section>
    <div class="section-head">
      <h2>Endpoints</h2>
      <a class="button" href="#/endpoints/new">Add endpoint</a>
    </div>
    ${show(list, 'portal', (endpoints) =>
      endpoints.length
        ? html`<ul class="cards">${endpoints.map(endpointCard)}</ul>`
        : empty(
            'No endpoints yet. Add one to start receiving webhooks.',
            html`<a class="button" href="#/endpoints/new">Add your first endpoint</a>`,
          ),
    )}
  </section>`;
}

type Catalog = NonNullable<EventTypeCatalogQuery['app']>['eventTypes'];
type Detail = NonNullable<EndpointDetailQuery['endpoint']>;

interface FormState {
  headers: { name: string; value: string }[];
  notice: Notice | undefined;
  busy: boolean;
  /** The field the last refusal was about (url, description, headers), to mark it and point it to the error. */
  field?: string;
}

const FORM_ERROR = 'endpoint-form-error';

/** Which field of the form an API refusal is about, from its code and the field it names first. */
function fieldOf(n: Notice | undefined): string | undefined {
  if (n?.kind !== 'error') return undefined;
  if (/^url\b|UNSAFE_URL/.test(n.text) || /^(url host|.* resolves to)/.test(n.text)) return 'url';
  if (/^description/.test(n.text)) return 'description';
  if (/^header/.test(n.text)) return 'headers';
  if (/^rateLimit/.test(n.text)) return 'rateLimit';
  return undefined;
}

/** aria-invalid and aria-describedby of a field the last error is about. */
const fieldError = (state: FormState, field: string) =>
  state.field === field ? { invalid: 'true', describedby: FORM_ERROR } : { invalid: 'false', describedby: undefined };

/** After a refused submit: mark the field, and move focus to the error (tied to the field) once drawn. */
function afterSubmit(state: FormState) {
  state.field = fieldOf(state.notice);
  if (state.notice?.kind === 'error') focusError(FORM_ERROR);
}

/** The add/edit form: URL, description, event types from the catalog, enabled, rate limit, ordering, custom headers. */
function endpointForm(
  ctx: PortalContext,
  catalog: Catalog,
  endpoint: Detail | undefined,
  state: FormState,
  redraw: Redraw,
  onSubmit: (form: HTMLFormElement) => void,
) {
  const selected = new Set(endpoint?.eventTypes ?? []);
  return html`<form class="form" @submit=${(e: Event) => {
    e.preventDefault();
    onSubmit(e.currentTarget as HTMLFormElement);
  }}>
    <label>Endpoint URL
      <input name="url" type="url" required placeholder="https://example.com/webhooks" .value=${endpoint?.url ?? ''}
        aria-invalid=${fieldError(state, 'url').invalid} aria-describedby=${fieldError(state, 'url').describedby ?? nothing} />
    </label>
    <label>Description
      <input name="description" type="text" maxlength="2000" placeholder="What this endpoint is for" .value=${endpoint?.description ?? ''}
        aria-invalid=${fieldError(state, 'description').invalid} aria-describedby=${fieldError(state, 'description').describedby ?? nothing} />
    </label>
    <fieldset>
      <legend>Event types <span class="muted">(none checked: all of them)</span></legend>
      ${
        catalog.length
          ? catalog.map(
              (t) => html`<label class="check">
              <input type="checkbox" name="eventTypes" value=${t.name} ?checked=${selected.has(t.name)} />
              <span><code>${t.name}</code>${t.description ? html`<span class="muted"> — ${t.description}</span>` : nothing}</span>
            </label>`,
            )
          : html`<p class="muted">This application has no event types yet.</p>`
      }
    </fieldset>
    <label class="check">
      <input type="checkbox" name="enabled" ?checked=${!(endpoint?.disabled ?? false)} />
      <span>Enabled</span>
    </label>
    <label>Rate limit <span class="muted">(requests per second, 1 to 1000; empty: no limit)</span>
      <input name="rateLimit" type="number" min="1" max="1000" step="1" placeholder="no limit" .value=${endpoint?.rateLimit != null ? String(endpoint.rateLimit) : ''}
        ?disabled=${!ctx.canSetRateLimit} aria-describedby=${ctx.canSetRateLimit ? nothing : 'rate-limit-note'}
        aria-invalid=${fieldError(state, 'rateLimit').invalid} />
    </label>
    ${ctx.canSetRateLimit ? nothing : html`<p class="muted" id="rate-limit-note">The rate limit is set by ${ctx.appName}.</p>`}
    <label class="check">
      <input type="checkbox" name="fifo" ?checked=${endpoint?.ordering === 'FIFO'} />
      <span>Deliver in order <span class="muted">(one at a time, in the order events happened; a failing one holds back the ones after it until it succeeds or runs out of retries)</span></span>
    </label>
    <fieldset aria-invalid=${fieldError(state, 'headers').invalid} aria-describedby=${fieldError(state, 'headers').describedby ?? nothing}>
      <legend>Custom headers</legend>
      ${state.headers.map(
        (h, i) => html`<div class="header-row">
          <input aria-label="Header name" placeholder="X-Header-Name" .value=${h.name} @input=${(e: Event) => (h.name = (e.target as HTMLInputElement).value)} />
          <input aria-label="Header value" placeholder="value" .value=${h.value} @input=${(e: Event) => (h.value = (e.target as HTMLInputElement).value)} />
          <button type="button" class="secondary" aria-label="Remove header" @click=${() => {
            state.headers.splice(i, 1);
            redraw();
          }}>✕</button>
        </div>`,
      )}
      <button type="button" class="secondary" @click=${() => {
        state.headers.push({ name: '', value: '' });
        redraw();
      }}>Add header</button>
    </fieldset>
    ${
      state.notice?.kind === 'error'
        ? html`<p class="notice notice-error" id=${FORM_ERROR} role="alert" tabindex="-1">${state.notice.text}</p>`
        : notice(state.notice)
    }
    <div class="actions"><button type="submit" ?disabled=${state.busy}>${endpoint ? 'Save changes' : 'Add endpoint'}</button></div>
  </form>`;
}

function readForm(ctx: PortalContext, form: HTMLFormElement, state: FormState) {
  const data = new FormData(form);
  const rate = String(data.get('rateLimit') ?? '').trim();
  const headers: Record<string, string> = {};
  for (const h of state.headers) if (h.name.trim()) headers[h.name.trim()] = h.value;
  return {
    url: String(data.get('url') ?? '').trim(),
    description: String(data.get('description') ?? '').trim() || null,
    eventTypes: data.getAll('eventTypes').map(String),
    disabled: !data.get('enabled'),
    headers,
    ordering: data.get('fifo') ? ('FIFO' as const) : ('NONE' as const),
    // Only sent when the app lets customers set it (else the API answers FORBIDDEN).
    ...(ctx.canSetRateLimit ? { rateLimit: rate ? Number(rate) : null } : {}),
  };
}

export function newEndpointPage(ctx: PortalContext, redraw: Redraw) {
  const catalog = resource(
    async () => (await gql(ctx.token, EventTypeCatalogDocument, { appId: ctx.appId })).app?.eventTypes ?? [],
    redraw,
  );
  const state: FormState = { headers: [], notice: undefined, busy: false };
  const submit = async (form: HTMLFormElement) => {
    state.busy = true;
    let createdId: string | undefined;
    await act(
      (n) => (state.notice = n),
      redraw,
      async () => {
        const input = readForm(ctx, form, state);
        const { createEndpoint } = await gql(ctx.token, CreatePortalEndpointDocument, {
          input: { appId: ctx.appId, recipientId: ctx.recipientUid, ...input },
        });
        createdId = createEndpoint.id;
        return 'Endpoint added.';
      },
    );
    state.busy = false;
    if (createdId) go(`#/endpoints/${createdId}`);
    else {
      afterSubmit(state);
      redraw();
    }
  };
  return () => html`<section>
    <p><a href="#/endpoints">← Endpoints</a></p>
    <h2>Add endpoint</h2>
    ${show(catalog, 'portal', (types) => endpointForm(ctx, types, undefined, state, redraw, (f) => void submit(f)))}
  </section>`;
}

export function endpointPage(ctx: PortalContext, id: string, redraw: Redraw) {
  const state: FormState = { headers: [], notice: undefined, busy: false };
  let secret: string | undefined;
  let secretNotice: Notice | undefined;
  let dangerNotice: Notice | undefined;
  let recoverNotice: Notice | undefined;
  const deliveries = recentDeliveries(ctx, id, redraw);
  const health = healthPanel(ctx, id, redraw);
  const data = resource(async () => {
    const [detail, catalog] = await Promise.all([
      gql(ctx.token, EndpointDetailDocument, { id }),
      gql(ctx.token, EventTypeCatalogDocument, { appId: ctx.appId }),
    ]);
    const endpoint = detail.endpoint;
    if (endpoint)
      state.headers = Object.entries((endpoint.headers ?? {}) as Record<string, string>).map(([name, value]) => ({
        name,
        value,
      }));
    return { endpoint, catalog: catalog.app?.eventTypes ?? [] };
  }, redraw);

  const save = async (form: HTMLFormElement) => {
    state.busy = true;
    await act(
      (n) => (state.notice = n),
      redraw,
      async () => {
        await gql(ctx.token, UpdatePortalEndpointDocument, { input: { id, ...readForm(ctx, form, state) } });
        return 'Saved.';
      },
    );
    state.busy = false;
    afterSubmit(state);
    await data.reload();
  };
  const reveal = () =>
    act(
      (n) => (secretNotice = n?.kind === 'error' ? n : undefined),
      redraw,
      async () => {
        secret = (await gql(ctx.token, EndpointSecretDocument, { id })).endpoint?.secret;
        return '';
      },
    );
  const rotate = (keyPair: boolean) => {
    const what = keyPair ? 'key pair' : 'signing secret';
    if (!confirm(`Make a new ${what}? The current one keeps working for 24 hours.`)) return;
    void act(
      (n) => (secretNotice = n),
      redraw,
      async () => {
        const rotated = (await gql(ctx.token, RotatePortalEndpointSecretDocument, { input: { id } }))
          .rotateEndpointSecret;
        // A public key is shown as it is, from the endpoint; a secret only once revealed.
        if (keyPair) await data.reload();
        else secret = rotated.secret;
        return `New ${what} made. The previous one keeps signing for 24 hours, so you can switch over.`;
      },
    );
  };
  const recover = (e: Event) => {
    e.preventDefault();
    const since = localToIso(new FormData(e.currentTarget as HTMLFormElement).get('since'));
    if (!since) return;
    void act(
      (n) => (recoverNotice = n),
      redraw,
      async () => {
        const { recoverEndpoint } = await gql(ctx.token, RecoverFromPortalDocument, {
          input: { endpointId: id, since },
        });
        await data.reload();
        return recoverEndpoint.queued
          ? `${recoverEndpoint.queued} failed deliveries queued to be sent again.`
          : 'No failed deliveries in that time.';
      },
    );
  };
  const remove = () => {
    if (!confirm('Delete this endpoint? It stops receiving webhooks at once.')) return;
    void act(
      (n) => (dangerNotice = n),
      redraw,
      async () => {
        await gql(ctx.token, DeletePortalEndpointDocument, { input: { id } });
        go('#/endpoints');
        return 'Deleted.';
      },
    );
  };

  return () => html`<section>
    <p><a href="#/endpoints">← Endpoints</a></p>
    ${show(data, 'portal', ({ endpoint, catalog }) =>
      !endpoint
        ? empty(
            'This endpoint does not exist (any more).',
            html`<a class="button" href="#/endpoints">Back to endpoints</a>`,
          )
        : html`<h2 class="url">${endpoint.url}</h2>
            <p>${endpoint.disabled ? badge('disabled') : badge('enabled')} ${endpoint.disabledReason ? html`<span class="muted">${endpoint.disabledReason}</span>` : nothing}</p>
            <div class="panel" data-testid="health-panel">
              ${health()}
            </div>
            <div class="panel">
              ${
                endpoint.publicKey
                  ? html`<h3>Public key</h3>
                      <p class="muted">Verify each webhook's <code>v1a</code> (ed25519) <code>webhook-signature</code> with this public key (Standard Webhooks). We keep the private key; nobody else needs it.</p>
                      <p class="secret"><code data-testid="public-key">${endpoint.publicKey}</code></p>
                      <div class="actions">
                        <button class="secondary" @click=${() => rotate(true)}>Rotate key pair</button>
                      </div>`
                  : html`<h3>Signing secret</h3>
                      <p class="muted">Verify each webhook's <code>webhook-signature</code> header with this secret (Standard Webhooks).</p>
                      <p class="secret"><code data-testid="secret">${secret ?? `whsec_${'•'.repeat(24)}`}</code></p>
                      <div class="actions">
                        ${
                          secret
                            ? html`${copyButton(secret, 'Copy the signing secret', redraw)}<button class="secondary" @click=${() => {
                                secret = undefined;
                                redraw();
                              }}>Hide</button>`
                            : html`<button class="secondary" @click=${() => void reveal()}>Reveal</button>`
                        }
                        <button class="secondary" @click=${() => rotate(false)}>Rotate secret</button>
                      </div>`
              }
              ${notice(secretNotice)}
            </div>
            <div class="panel">
              <h3>Settings</h3>
              ${endpointForm(ctx, catalog, endpoint, state, redraw, (f) => void save(f))}
            </div>
            <div class="panel">
              <h3>Recent deliveries</h3>
              ${deliveries()}
            </div>
            <div class="panel">
              <h3>Recover failed deliveries</h3>
              <p class="muted">Send again every delivery to this endpoint that failed since a time, e.g. after an outage on your side.</p>
              <form class="form inline" @submit=${recover}>
                <label>Failed since<input type="datetime-local" name="since" required .value=${isoToLocal(new Date(Date.now() - 24 * 3600_000).toISOString())} /></label>
                <div class="actions"><button type="submit">Recover</button></div>
              </form>
              ${notice(recoverNotice)}
            </div>
            <div class="panel danger">
              <h3>Delete</h3>
              <button class="danger" @click=${remove}>Delete endpoint</button>
              ${notice(dangerNotice)}
            </div>`,
    )}
  </section>`;
}
