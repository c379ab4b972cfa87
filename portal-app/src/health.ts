import { html, nothing, svg, type TemplateResult } from 'lit-html';
import { gql } from './api.ts';
import type { PortalContext } from './endpoints.ts';
import {
  EndpointAttemptFinishedDocument,
  EndpointHealthChartDocument,
  type EndpointHealthChartQuery,
  EndpointHealthLiveDocument,
} from './generated.ts';
import { coalesced, follow } from './live.ts';
import { badge, errorKindText, type Redraw, resource, show, time } from './ui.ts';

type Chart = NonNullable<EndpointHealthChartQuery['endpoint']>;
type Bucket = Chart['stats']['buckets'][number];

const RANGES = {
  '24h': { label: 'Last 24 hours', hours: 24 },
  '7d': { label: 'Last 7 days', hours: 24 * 7 },
} as const;
type Range = keyof typeof RANGES;

/** Drawing units of the chart (the SVG scales to its box). */
const WIDTH = 720;
const HEIGHT = 160;
const LEFT = 36;
const BOTTOM = 20;

const hourLabel = (iso: string, withDay: boolean) =>
  new Date(iso).toLocaleString(
    undefined,
    withDay ? { weekday: 'short', hour: '2-digit' } : { hour: '2-digit', minute: '2-digit' },
  );

const count = (n: number, what: string) => `${n.toLocaleString()} ${what}`;

/** The chart's text twin: what a screen reader reads and anyone can copy. */
function summaryText(stats: Chart['stats'], range: Range): string {
  const { summary, buckets } = stats;
  if (summary.total === 0) return `${RANGES[range].label}: no attempts.`;
  const rate = summary.successRate === null ? '' : ` (${Math.round(summary.successRate * 1000) / 10} % succeeded)`;
  const busiest = buckets.reduce((a, b) => (b.succeeded + b.failed > a.succeeded + a.failed ? b : a));
  const latency = summary.p95Ms === null ? '' : ` p50 ${summary.p50Ms} ms, p95 ${summary.p95Ms} ms.`;
  return (
    `${RANGES[range].label}: ${count(summary.succeeded, 'succeeded')}, ${count(summary.failed, 'failed')}${rate}. ` +
    `Busiest hour: ${hourLabel(busiest.start, range === '7d')} with ${busiest.succeeded + busiest.failed}.${latency}`
  );
}

/** Stacked bars per hour: succeeded below, failed above, on a shared scale. */
function chart(stats: Chart['stats'], range: Range, ids: { title: string; desc: string }): TemplateResult {
  const buckets = stats.buckets;
  const max = Math.max(1, ...buckets.map((b) => b.succeeded + b.failed));
  const plotWidth = WIDTH - LEFT;
  const plotHeight = HEIGHT - BOTTOM;
  const step = plotWidth / Math.max(1, buckets.length);
  const barWidth = Math.max(1, step * 0.8);
  const y = (n: number) => (n / max) * plotHeight;
  const bar = (b: Bucket, i: number) => {
    const x = LEFT + i * step + (step - barWidth) / 2;
    const ok = y(b.succeeded);
    const bad = y(b.failed);
    const label = `${hourLabel(b.start, range === '7d')}: ${b.succeeded} succeeded, ${b.failed} failed${b.p95Ms != null ? `, p95 ${b.p95Ms} ms` : ''}`;
    return svg`<g class="chart-bucket" data-start=${b.start}>
      <title>${label}</title>
      <rect class="chart-hit" x=${LEFT + i * step} y="0" width=${step} height=${plotHeight}></rect>
      ${b.succeeded ? svg`<rect class="chart-ok" data-count=${b.succeeded} x=${x} y=${plotHeight - ok} width=${barWidth} height=${ok}></rect>` : nothing}
      ${b.failed ? svg`<rect class="chart-bad" data-count=${b.failed} x=${x} y=${plotHeight - ok - bad} width=${barWidth} height=${bad}></rect>` : nothing}
    </g>`;
  };
  const first = buckets[0];
  const last = buckets.at(-1);
  return html`<svg class="health-chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-labelledby="${ids.title} ${ids.desc}"
      data-testid="health-chart" data-succeeded=${stats.summary.succeeded} data-failed=${stats.summary.failed}>
    <title id=${ids.title}>Attempts per hour, ${RANGES[range].label.toLowerCase()}</title>
    <desc id=${ids.desc}>${summaryText(stats, range)}</desc>
    <line class="chart-axis" x1=${LEFT} y1=${plotHeight} x2=${WIDTH} y2=${plotHeight}></line>
    <text class="chart-label" x=${LEFT - 4} y="10" text-anchor="end">${max}</text>
    <text class="chart-label" x=${LEFT - 4} y=${plotHeight} text-anchor="end">0</text>
    ${buckets.map(bar)}
    ${first ? svg`<text class="chart-label" x=${LEFT} y=${HEIGHT - 4}>${hourLabel(first.start, range === '7d')}</text>` : nothing}
    ${last ? svg`<text class="chart-label" x=${WIDTH} y=${HEIGHT - 4} text-anchor="end">${hourLabel(last.end, range === '7d')}</text>` : nothing}
  </svg>`;
}

function healthLine(health: Chart['health']): TemplateResult {
  const error = health.lastError
    ? errorKindText(health.lastError.errorKind, health.lastError.responseStatusCode)
    : undefined;
  return html`<p data-testid="health-status">
    ${badge(health.status)}
    ${health.status === 'FAILING' && health.failingSince ? html`<span class="muted">every attempt failed since ${time(health.failingSince)}</span>` : nothing}
    ${error ? html`<span class="muted">· last: ${error}</span>` : nothing}
    ${health.nextRetryAt ? html`<span class="muted">· next retry ${time(health.nextRetryAt)}</span>` : nothing}
  </p>`;
}

/**
 * An endpoint's health and its attempts per hour over the last 24 hours or
 * 7 days (Endpoint.health and Endpoint.stats), read again as its attempts
 * finish and its health changes (live), at most one read at a time.
 */
export function healthPanel(ctx: PortalContext, endpointId: string, redraw: Redraw) {
  let range: Range = '24h';
  const ids = { title: `health-title-${endpointId}`, desc: `health-desc-${endpointId}` };
  // Each read keeps the range it was made for, so the labels always match the bars.
  const data = resource(async () => {
    const asked = range;
    const since = new Date(Date.now() - RANGES[asked].hours * 3600_000).toISOString();
    return {
      range: asked,
      endpoint: (await gql(ctx.token, EndpointHealthChartDocument, { id: endpointId, since })).endpoint,
    };
  }, redraw);
  const reread = coalesced(() => data.reload());
  const quiet = { error: () => undefined, interrupted: () => undefined, resumed: () => void reread() };
  const stops = [
    follow(
      ctx.token,
      EndpointAttemptFinishedDocument,
      { appId: ctx.appId, endpointId },
      {
        ...quiet,
        data: ({ attemptUpdated }) => {
          if (attemptUpdated.status !== 'SENDING') void reread();
        },
      },
    ),
    follow(
      ctx.token,
      EndpointHealthLiveDocument,
      { appId: ctx.appId },
      {
        ...quiet,
        data: ({ endpointHealthChanged }) => {
          if (endpointHealthChanged.id === endpointId) void reread();
        },
      },
    ),
  ];
  window.addEventListener(
    'hashchange',
    () => {
      for (const stop of stops) stop();
    },
    { once: true },
  );
  const choose = (next: Range) => {
    if (next === range) return;
    range = next;
    void reread();
  };
  return () => html`<div class="section-head">
      <h3>Health</h3>
      <div class="segmented" role="group" aria-label="Time range">
        ${(Object.keys(RANGES) as Range[]).map(
          (r) => html`<button type="button" class="secondary small" aria-pressed=${r === range ? 'true' : 'false'}
            @click=${() => choose(r)}>${RANGES[r].label}</button>`,
        )}
      </div>
    </div>
    ${show(data, 'portal', ({ range: shown, endpoint }) =>
      !endpoint
        ? html`<p class="muted">No health to show.</p>`
        : html`${healthLine(endpoint.health)}
          <figure class="chart">
            ${chart(endpoint.stats, shown, ids)}
            <figcaption>
              <span class="legend legend-ok">succeeded</span> <span class="legend legend-bad">failed</span>
              <span data-testid="health-summary">${summaryText(endpoint.stats, shown)}</span>
            </figcaption>
          </figure>`,
    )}`;
}
