import { html, nothing } from 'lit-html';
import { gql } from './api.ts';
import {
  PortalViewerDocument,
  ReplayFromPortalDocument,
  ReplayProgressFeedDocument,
  type ReplayProgressFeedSubscription,
} from './generated.ts';
import { subscribe } from './live.ts';
import { act, isoToLocal, localToIso, type Mode, type Notice, notice, type Redraw, resource } from './ui.ts';

type Progress = ReplayProgressFeedSubscription['replayProgress'];

/**
 * "Replay failed messages": the failed deliveries of a time window, narrowed
 * by endpoint (the portal's own) or recipient (the dashboard), and event
 * types, each sent once more as background work (replayMessages); the
 * progress bar follows replayProgress live until it is done.
 */
export function replayPanel(
  o: {
    token: string;
    appId: string;
    mode: Mode;
    eventTypes: () => string[];
    /** Called once the replay is done, to read the list again. */
    onDone: () => void;
  },
  redraw: Redraw,
) {
  const endpoints = resource(
    async () =>
      o.mode === 'portal' ? ((await gql(o.token, PortalViewerDocument)).viewer.recipient?.endpoints.nodes ?? []) : [],
    redraw,
  );
  let result: Notice | undefined;
  let progress: Progress | undefined;
  let busy = false;
  let stop: (() => void) | undefined;
  window.addEventListener('hashchange', () => stop?.(), { once: true });
  const dayAgo = isoToLocal(new Date(Date.now() - 24 * 3600 * 1000).toISOString());

  const submit = (e: Event) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget as HTMLFormElement);
    const since = localToIso(data.get('since'));
    const until = localToIso(data.get('until'));
    const eventTypes = data.getAll('eventTypes').map(String).filter(Boolean);
    const endpointId = String(data.get('endpointId') ?? '') || undefined;
    const recipientId = String(data.get('recipientId') ?? '').trim() || undefined;
    void act(
      (n) => (result = n),
      redraw,
      async () => {
        if (!since) throw new Error('Choose when the window starts.');
        busy = true;
        stop?.();
        progress = undefined;
        try {
          const { replayMessages } = await gql(o.token, ReplayFromPortalDocument, {
            input: {
              appId: o.appId,
              status: 'FAILED',
              since,
              until,
              endpointId,
              recipientId,
              eventTypes: eventTypes.length ? eventTypes : undefined,
              // One id per click: a request sent twice (a retry, a double click) replays once.
              requestId: crypto.randomUUID(),
            },
          });
          if (replayMessages.count === 0) return 'No failed deliveries match these filters: nothing to replay.';
          stop = subscribe(
            o.token,
            ReplayProgressFeedDocument,
            { jobId: replayMessages.jobId },
            ({ replayProgress }) => {
              progress = replayProgress;
              if (replayProgress.done) o.onDone();
              redraw();
            },
            (message) => {
              result = { kind: 'error', text: `Progress unavailable: ${message}` };
              redraw();
            },
          );
          return `Replaying ${replayMessages.count} failed deliver${replayMessages.count === 1 ? 'y' : 'ies'}.`;
        } finally {
          busy = false;
        }
      },
    );
  };

  const bar = (p: Progress) => {
    const ended = p.succeeded + p.failed;
    return html`<div class="replay-progress" data-testid="replay-progress" data-done=${String(p.done)}>
      <progress max=${Math.max(p.total, 1)} .value=${ended} aria-label="Replay progress"></progress>
      <p class=${p.done ? '' : 'muted'} role="status">
        ${ended} of ${p.total} done · <span data-testid="replay-succeeded">${p.succeeded}</span> succeeded ·
        <span data-testid="replay-failed">${p.failed}</span> failed${p.skipped ? html` · ${p.skipped} skipped (already pending)` : nothing}${p.done ? html` · <strong>finished</strong>` : html` · ${p.queued} queued, ${p.sent} sent`}
      </p>
    </div>`;
  };

  return () => html`<details class="panel replay" data-testid="replay-panel">
    <summary>Replay failed messages</summary>
    <p class="muted">Sends each failed delivery of the window once more. Deliveries already waiting for a try are left alone.</p>
    <form class="filters" @submit=${submit}>
      ${
        o.mode === 'portal'
          ? html`<label>Replay to endpoint
              <select name="endpointId">
                <option value="">All endpoints</option>
                ${(endpoints.data ?? []).map((e) => html`<option value=${e.id}>${e.url}</option>`)}
              </select>
            </label>`
          : html`<label>Replay to recipient<input name="recipientId" placeholder="all recipients" /></label>`
      }
      <label>Only these events
        <select name="eventTypes" multiple size="3">
          ${o.eventTypes().map((t) => html`<option value=${t}>${t}</option>`)}
        </select>
      </label>
      <label>Sent from<input type="datetime-local" name="since" required .value=${dayAgo} /></label>
      <label>Sent until<input type="datetime-local" name="until" /></label>
      <div class="actions"><button type="submit" ?disabled=${busy}>Replay failed messages</button></div>
    </form>
    ${notice(result)}
    ${progress ? bar(progress) : nothing}
  </details>`;
}
