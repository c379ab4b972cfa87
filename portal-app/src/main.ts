import { html, nothing, render, type TemplateResult } from 'lit-html';
import { gql, session, takeTokenFromFragment } from './api.ts';
import { catalogPage, testEventPage } from './catalog.ts';
import { appPage, appsPage, signInPage } from './dashboard.ts';
import { endpointPage, endpointsPage, newEndpointPage, type PortalContext } from './endpoints.ts';
import { PortalViewerDocument } from './generated.ts';
import { livePage } from './live.ts';
import { messageDetailPage, messageLogPage } from './messages.ts';
import { errorBox, loading, type Redraw, setTitle, toApiError } from './ui.ts';
import './style.css';

const root = document.getElementById('app')!;
// The static "Loading…" of index.html is not lit-html's to replace.
root.replaceChildren();
let generation = 0;
let portal: PortalContext | undefined;

/** The hash route: #/path/segments?query. */
function currentRoute() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?', 2) as [string, string | undefined];
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query ?? '') };
}

function frame(
  side: 'portal' | 'dashboard',
  title: string,
  nav: [string, string][],
  active: string,
  body: TemplateResult,
  extra: TemplateResult | typeof nothing = nothing,
  page?: string,
) {
  setTitle(page ?? nav.find(([href]) => href === active)?.[1] ?? title, title);
  return html`<header class="top">
      <div class="brand"><span class="logo" aria-hidden="true">⇄</span><h1>${title}</h1></div>
      <nav aria-label=${side}>
        ${nav.map(([href, label]) => html`<a href=${href} class=${active === href ? 'active' : ''} aria-current=${active === href ? 'page' : 'false'}>${label}</a>`)}
        ${extra}
      </nav>
    </header>
    <main>${body}</main>`;
}

/** Starts the page of the current route; its async loads redraw only while it is still current. */
function route() {
  const gen = ++generation;
  const { parts, query } = currentRoute();
  let view: () => TemplateResult = () => loading();
  const redraw: Redraw = () => {
    if (gen === generation) render(view(), root);
  };
  if (parts[0] === 'dashboard') view = dashboardRoute(parts.slice(1), query, redraw);
  else view = portalRoute(parts, query, redraw, gen);
  redraw();
  window.scrollTo(0, 0);
}

function dashboardRoute(parts: string[], query: URLSearchParams, redraw: Redraw): () => TemplateResult {
  const apiKey = session.apiKey();
  const signOut = html`<button class="link" @click=${() => {
    session.signOut();
    location.hash = '#/dashboard';
    route();
  }}>Sign out</button>`;
  if (!apiKey) {
    const page = signInPage(redraw, () => route());
    return () => frame('dashboard', 'Dispatch dashboard', [], '', page(), nothing, 'Sign in');
  }
  const nav: [string, string][] = [['#/dashboard', 'Apps']];
  let page: () => TemplateResult;
  let active = '#/dashboard';
  let title = 'Apps';
  const [, appId, sub, messageId] = parts;
  if (parts[0] === 'apps' && appId && sub === 'live') {
    page = livePage(
      { token: apiKey, appId, mode: 'dashboard', messageBase: `#/dashboard/apps/${appId}/messages` },
      redraw,
    );
    title = 'Live attempts';
  } else if (parts[0] === 'apps' && appId && sub === 'messages' && messageId) {
    page = messageDetailPage(
      { token: apiKey, appId, mode: 'dashboard', base: `#/dashboard/apps/${appId}/messages`, id: messageId },
      redraw,
    );
    title = 'Message';
  } else if (parts[0] === 'apps' && appId && sub === 'messages') {
    page = messageLogPage(
      {
        token: apiKey,
        appId,
        mode: 'dashboard',
        base: `#/dashboard/apps/${appId}/messages`,
        filters: query,
        byRecipient: true,
      },
      redraw,
    );
    title = 'Messages';
  } else if (parts[0] === 'apps' && appId) {
    page = appPage(apiKey, appId, redraw);
    title = 'App';
  } else {
    page = appsPage(apiKey, redraw);
    active = '#/dashboard';
  }
  return () => frame('dashboard', 'Dispatch dashboard', nav, active, page(), signOut, title);
}

function portalRoute(parts: string[], query: URLSearchParams, redraw: Redraw, gen: number): () => TemplateResult {
  const token = session.portalToken();
  if (!token) {
    return () =>
      frame(
        'portal',
        'Webhooks',
        [],
        '',
        html`<div class="state empty" data-state="no-token">
          <h2>Open this page from your account</h2>
          <p>The webhooks portal opens with a personal link from the application you use. Operators can <a href="#/dashboard">sign in to the dashboard</a>.</p>
        </div>`,
      );
  }
  if (!portal || portal.token !== token) {
    let failure: ReturnType<typeof toApiError> | undefined;
    gql(token, PortalViewerDocument)
      .then(({ viewer }) => {
        if (!viewer.app || !viewer.recipient) throw new Error('This link is not a portal link.');
        portal = {
          token,
          appId: viewer.app.id,
          appName: viewer.app.name,
          recipientUid: viewer.recipient.recipientId,
          canSetRateLimit: viewer.app.portalCanSetRateLimit,
        };
        if (gen === generation) route();
      })
      .catch((error) => {
        failure = toApiError(error);
        redraw();
      });
    return () =>
      frame(
        'portal',
        'Webhooks',
        [],
        '',
        failure ? errorBox(failure, 'portal', () => route()) : loading(),
        nothing,
        failure?.code === 'UNAUTHENTICATED' ? 'Link expired' : undefined,
      );
  }
  const ctx = portal;
  const nav: [string, string][] = [
    ['#/endpoints', 'Endpoints'],
    ['#/messages', 'Messages'],
    ['#/event-types', 'Event types'],
    ['#/test', 'Send a test'],
    ['#/live', 'Live'],
  ];
  let page: () => TemplateResult;
  let active = '#/endpoints';
  let title: string | undefined;
  if (parts[0] === 'messages' && parts[1]) {
    page = messageDetailPage({ token, appId: ctx.appId, mode: 'portal', base: '#/messages', id: parts[1] }, redraw);
    active = '#/messages';
    title = 'Message';
  } else if (parts[0] === 'messages') {
    page = messageLogPage(
      { token, appId: ctx.appId, mode: 'portal', base: '#/messages', filters: query, byRecipient: false },
      redraw,
    );
    active = '#/messages';
  } else if (parts[0] === 'live') {
    page = livePage({ token, appId: ctx.appId, mode: 'portal', messageBase: '#/messages' }, redraw);
    active = '#/live';
  } else if (parts[0] === 'event-types') {
    page = catalogPage(ctx, redraw);
    active = '#/event-types';
  } else if (parts[0] === 'test') {
    page = testEventPage(ctx, query, redraw);
    active = '#/test';
    title = 'Send a test event';
  } else if (parts[0] === 'endpoints' && parts[1] === 'new') {
    page = newEndpointPage(ctx, redraw);
    title = 'Add endpoint';
  } else if (parts[0] === 'endpoints' && parts[1]) {
    page = endpointPage(ctx, parts[1], redraw);
    title = 'Endpoint';
  } else {
    page = endpointsPage(ctx, redraw);
  }
  return () => frame('portal', `${ctx.appName} · webhooks`, nav, active, page(), nothing, title);
}

takeTokenFromFragment();
window.addEventListener('hashchange', () => {
  takeTokenFromFragment();
  route();
});
route();
