import { html, nothing } from 'lit-html';
import { repeat } from 'lit-html/directives/repeat.js';
import { gql } from './api.ts';
import type { PortalContext } from './endpoints.ts';
import { EndpointDeliveriesDocument, type EndpointDeliveriesQuery, LiveAttemptsDocument } from './generated.ts';
import { coalesced, follow } from './live.ts';
import { badge, type Redraw, resource, show, time } from './ui.ts';

type Row = NonNullable<EndpointDeliveriesQuery['endpoint']>['deliveries']['nodes'][number];

/** When a delivery last changed: its last attempt, else when it was made. */
const when = (d: Row) => d.lastAttemptAt ?? d.createdAt;

/**
 * An endpoint's recent deliveries, newest activity first, read again as its attempts start and end (live),
 * apart from the endpoint's settings so a reread never touches the form being edited.
 */
export function recentDeliveries(ctx: PortalContext, endpointId: string, redraw: Redraw) {
  const list = resource(async () => {
    const rows =
      (await gql(ctx.token, EndpointDeliveriesDocument, { id: endpointId })).endpoint?.deliveries.nodes ?? [];
    return [...rows].sort((a, b) => Date.parse(when(b)) - Date.parse(when(a)));
  }, redraw);
  const reread = coalesced(() => list.reload());
  const stop = follow(
    ctx.token,
    LiveAttemptsDocument,
    { appId: ctx.appId, endpointId },
    { data: () => void reread(), error: () => undefined, interrupted: () => undefined, resumed: () => void reread() },
  );
  window.addEventListener('hashchange', stop, { once: true });
  return () => html`<p><a class="button secondary small" href="#/test?endpoint=${encodeURIComponent(endpointId)}">Send a test event</a></p>
    ${show(list, 'portal', (rows) =>
      rows.length
        ? html`<ul class="rows" data-testid="recent-deliveries">
            ${repeat(
              rows,
              (d) => d.id,
              (d) => html`<li data-testid="recent-delivery">
                <a href="#/messages/${d.message.id}"><code>${d.message.eventType}</code></a>${d.message.test ? html` <span class="badge badge-test">test</span>` : nothing}
                ${badge(d.status)} <span class="muted">${d.attemptCount} attempt(s) · ${time(when(d))}${d.heldBy ? ' · held back in order' : ''}</span>
              </li>`,
            )}
          </ul>`
        : html`<p class="muted">Nothing delivered to this endpoint yet.</p>`,
    )}`;
}
