import { html, nothing, type TemplateResult } from 'lit-html';
import { ApiError } from './api.ts';

export type Redraw = () => void;

/** Data loaded for a screen, with its loading and error states. */
export interface Resource<T> {
  state: 'loading' | 'ready' | 'error';
  data: T | undefined;
  error: ApiError | undefined;
  reload(): Promise<void>;
}

export function resource<T>(load: () => Promise<T>, redraw: Redraw): Resource<T> {
  const r: Resource<T> = {
    state: 'loading',
    data: undefined,
    error: undefined,
    async reload() {
      r.state = r.data === undefined ? 'loading' : r.state;
      redraw();
      try {
        r.data = await load();
        r.state = 'ready';
        r.error = undefined;
      } catch (error) {
        r.error = toApiError(error);
        r.state = 'error';
      }
      redraw();
    },
  };
  void r.reload();
  return r;
}

export function toApiError(error: unknown): ApiError {
  return error instanceof ApiError
    ? error
    : new ApiError(error instanceof Error ? error.message : String(error), 'INTERNAL_SERVER_ERROR');
}

/** Which side of the SPA is showing, for what an expired credential means. */
export type Mode = 'portal' | 'dashboard';

export const loading = (what = 'Loading') => html`<p class="state loading" role="status">${what}…</p>`;

export const empty = (text: string, action: TemplateResult | typeof nothing = nothing) =>
  html`<div class="state empty"><p>${text}</p>${action}</div>`;

export function errorBox(error: ApiError, mode: Mode, retry?: () => void): TemplateResult {
  if (error.code === 'UNAUTHENTICATED') {
    return mode === 'portal'
      ? html`<div class="state expired" role="alert" data-state="expired">
          <h2>This link has expired</h2>
          <p>Portal links are short-lived. Go back to the application that sent you here and open the webhooks page again.</p>
        </div>`
      : html`<div class="state expired" role="alert" data-state="expired">
          <h2>API key not accepted</h2>
          <p>The key was revoked or mistyped. <a href="#/dashboard" @click=${signOutLink}>Sign in again</a>.</p>
        </div>`;
  }
  return html`<div class="state error" role="alert">
    <p><strong>Something went wrong.</strong> ${error.message}</p>
    ${retry ? html`<button class="secondary" @click=${retry}>Try again</button>` : nothing}
  </div>`;
}

function signOutLink() {
  sessionStorage.removeItem('dispatch.apiKey');
}

/** The standard rendering of a resource: loading, error, or its content. */
export function show<T>(r: Resource<T>, mode: Mode, content: (data: T) => TemplateResult): TemplateResult {
  if (r.state === 'loading' || (r.state !== 'error' && r.data === undefined)) return loading();
  if (r.state === 'error') return errorBox(r.error!, mode, () => void r.reload());
  return content(r.data as T);
}

export function time(iso: string | null | undefined): TemplateResult | string {
  if (!iso) return '—';
  const d = new Date(iso);
  return html`<time datetime=${iso} title=${iso}>${d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' })}</time>`;
}

export const badge = (status: string) =>
  html`<span class="badge badge-${status.toLowerCase()}">${status.toLowerCase()}</span>`;

export const pretty = (value: unknown) => JSON.stringify(value, null, 2);

/** An inline message after an action: what happened, or why it failed. */
export interface Notice {
  kind: 'ok' | 'error';
  text: string;
}

export const notice = (n: Notice | undefined) =>
  n ? html`<p class="notice notice-${n.kind}" role=${n.kind === 'error' ? 'alert' : 'status'}>${n.text}</p>` : nothing;

/** Runs an action, turning its outcome into a notice; returns whether it worked. */
export async function act(
  set: (n: Notice | undefined) => void,
  redraw: Redraw,
  work: () => Promise<string>,
): Promise<boolean> {
  set(undefined);
  redraw();
  try {
    set({ kind: 'ok', text: await work() });
    return true;
  } catch (error) {
    set({ kind: 'error', text: toApiError(error).message });
    return false;
  } finally {
    redraw();
  }
}

/** A datetime-local input's value as an ISO instant (it is local time), or undefined. */
export function localToIso(value: FormDataEntryValue | null): string | undefined {
  if (typeof value !== 'string' || !value) return undefined;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

export function isoToLocal(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** One page of a Relay connection, as every paged query asks for it. */
export interface Page<T> {
  nodes: T[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/**
 * Reads on after `page` (the start of a list) until the pages cover `count` items or the list ends, each
 * page of at most `max` (the API's largest); returns them as one page, with the last page's cursor.
 * Reads nothing more when the first page already covers `count`.
 */
export async function readThrough<T>(
  page: Page<T>,
  count: number,
  max: number,
  load: (first: number, after: string) => Promise<Page<T> | null | undefined>,
): Promise<Page<T>> {
  const nodes = [...page.nodes];
  let { pageInfo } = page;
  while (nodes.length < count && pageInfo.hasNextPage && pageInfo.endCursor) {
    const next = await load(Math.min(count - nodes.length, max), pageInfo.endCursor);
    // The list is gone (deleted meanwhile): what was read stays, and the cursor keeps the rest shown.
    if (!next) break;
    nodes.push(...next.nodes);
    pageInfo = next.pageInfo;
  }
  return { nodes, pageInfo };
}

/** A list shown a page at a time: "Load more" appends the next page after the last one shown. */
export class PagedList<T> {
  items: T[] = [];
  next: string | null = null;
  loadingMore = false;
  moreError: string | undefined;
  // Bumped by reset, so a page that arrives after the list started over is dropped.
  private generation = 0;
  private readonly load: (after: string) => Promise<Page<T> | null | undefined>;
  private readonly redraw: Redraw;

  constructor(load: (after: string) => Promise<Page<T> | null | undefined>, redraw: Redraw) {
    this.load = load;
    this.redraw = redraw;
  }

  /** Starts over from a first page, loaded by the caller (on its own or inside a bigger query). */
  reset(page: Page<T> | null | undefined): this {
    this.generation++;
    this.items = page?.nodes ?? [];
    this.next = page?.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    this.loadingMore = false;
    this.moreError = undefined;
    return this;
  }

  /**
   * Takes a fresh read of the start of the list without losing the pages loaded after it: the fresh
   * items replace those shown, and the older ones loaded beyond the fresh page stay after them (with
   * the cursor after the last). A fresh page that reaches every item shown, or none of them (more new
   * items came than it holds, so keeping the rest would leave a gap), starts the list over instead.
   */
  refresh(page: Page<T> | null | undefined, key: (item: T) => string): this {
    const last = this.items.at(-1);
    if (!page || !last || !page.pageInfo.hasNextPage) return this.reset(page);
    const fresh = new Set(page.nodes.map(key));
    if (fresh.has(key(last)) || !this.items.some((item) => fresh.has(key(item)))) return this.reset(page);
    // A page being loaded after the last item still fits after it, so it is not dropped (no generation bump).
    this.items = [...page.nodes, ...this.items.filter((item) => !fresh.has(key(item)))];
    return this;
  }

  async more(): Promise<void> {
    const after = this.next;
    if (!after || this.loadingMore) return;
    const generation = this.generation;
    this.loadingMore = true;
    this.moreError = undefined;
    this.redraw();
    try {
      const page = await this.load(after);
      if (generation !== this.generation) return;
      this.items = [...this.items, ...(page?.nodes ?? [])];
      this.next = page?.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    } catch (error) {
      if (generation === this.generation) this.moreError = toApiError(error).message;
    } finally {
      if (generation === this.generation) this.loadingMore = false;
      this.redraw();
    }
  }
}

/** A paged list whose first page loads like any resource (and reload() starts over from it). */
export function pagedResource<T>(
  load: (after: string | null) => Promise<Page<T> | null | undefined>,
  redraw: Redraw,
): Resource<PagedList<T>> {
  const list = new PagedList<T>(load, redraw);
  return resource(async () => list.reset(await load(null)), redraw);
}

/** The "Load more" button of a paged list, while it has more, and why the last try failed. */
export const loadMore = <T>(list: PagedList<T>, label = 'Load more') =>
  html`${list.moreError ? html`<p class="notice notice-error" role="alert">${list.moreError}</p>` : nothing}
  ${
    list.next
      ? html`<div class="actions"><button class="secondary" ?disabled=${list.loadingMore} @click=${() => void list.more()}>${list.loadingMore ? 'Loading…' : label}</button></div>`
      : nothing
  }`;

/** An attempt's errorKind (Attempt.errorKind in schema.graphql) as a sentence about the receiver. */
const ERROR_KINDS: Record<string, (status: number | null | undefined) => string> = {
  http_status: (status) =>
    status != null ? `the receiver answered HTTP ${status}` : 'the receiver answered an error status',
  timeout: () => 'the receiver did not answer in time',
  connection_refused: () => 'the receiver refused the connection (nothing listening at that address?)',
  connection_reset: () => 'the receiver closed the connection before answering',
  dns: () => "the endpoint's host name does not resolve",
  tls: () => "the receiver's TLS certificate or handshake failed",
  unsafe_address: () => 'the endpoint points to a private or local address, which is not delivered to',
  redirect: () => 'the receiver answered with a redirect, which is not followed',
  invalid_response: () => 'the receiver answered something that is not valid HTTP',
  invalid_request: () => 'the request could not be made to this URL',
  network: () => 'a network error stopped the request',
};

export function errorKindText(kind: string | null | undefined, status?: number | null): string | undefined {
  if (!kind) return undefined;
  return ERROR_KINDS[kind]?.(status) ?? `the attempt failed (${kind.replaceAll('_', ' ')})`;
}

/** A button that copies `text` and says so for a moment. */
export function copyButton(text: string, label: string, redraw: Redraw) {
  const state = copied.get(text);
  return html`<button type="button" class="secondary small copy" aria-label=${label} @click=${async () => {
    try {
      await navigator.clipboard.writeText(text);
      copied.set(text, 'Copied');
    } catch {
      copied.set(text, 'Press Ctrl+C to copy');
    }
    redraw();
    setTimeout(() => {
      copied.delete(text);
      redraw();
    }, 2000);
  }}>${state ?? 'Copy'}</button><span class="visually-hidden" role="status">${state === 'Copied' ? 'Copied to the clipboard' : ''}</span>`;
}
const copied = new Map<string, string>();

/** The title of the browser tab: the page, then where it is. */
export function setTitle(page: string, where: string) {
  const title = page === where ? where : `${page} · ${where}`;
  if (document.title !== title) document.title = title;
}

/**
 * Moves focus to the error shown after a failed submit, once lit-html has drawn it (the error element has
 * tabindex=-1 and the field it is about points to it with aria-describedby).
 */
export function focusError(id: string) {
  requestAnimationFrame(() => document.getElementById(id)?.focus());
}
