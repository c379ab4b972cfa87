import { type Client, createClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { GraphQLErrorShape } from '../../packages/client/src/index.ts';

export interface FeedResult<T> {
  data?: T | null;
  errors?: GraphQLErrorShape[];
}

/**
 * What one subscription received, in order, with a way to wait for the next
 * result (no sleeping: each waiter is woken by the result itself).
 */
export class Feed<T> {
  readonly results: FeedResult<T>[] = [];
  readonly receivedAt: number[] = [];
  /** Wall-clock receipt times, to compare with timestamps another process wrote. */
  readonly receivedWallAt: number[] = [];
  ended: { error?: unknown } | undefined;
  private waiters: (() => void)[] = [];
  private read = 0;

  push(result: FeedResult<T>) {
    this.results.push(result);
    this.receivedAt.push(performance.now());
    this.receivedWallAt.push(Date.now());
    this.wake();
  }

  end(error?: unknown) {
    this.ended = { error };
    this.wake();
  }

  private wake() {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once `predicate` holds, or rejects after timeoutMs with what was received. */
  async until(predicate: (feed: this) => boolean, timeoutMs = 5_000, what = 'the feed'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this)) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${what}: timed out after ${timeoutMs} ms with ${this.results.length} results${this.ended ? ' (ended)' : ''}: ${JSON.stringify(this.results.slice(-3))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The next result not yet taken by next(). */
  async next(timeoutMs = 5_000): Promise<FeedResult<T>> {
    await this.until((f) => f.results.length > this.read || f.ended !== undefined, timeoutMs, 'next result');
    if (this.results.length <= this.read)
      throw new Error(
        `the feed ended: ${String((this.ended?.error as Error | undefined)?.message ?? this.ended?.error ?? 'complete')}`,
      );
    return this.results[this.read++]!;
  }

  /** The data of the next result; fails on errors. */
  async nextData(timeoutMs = 5_000): Promise<T> {
    const result = await this.next(timeoutMs);
    if (result.errors?.length || !result.data) throw new Error(`expected data, got ${JSON.stringify(result)}`);
    return result.data;
  }

  get data(): T[] {
    return this.results.filter((r) => r.data).map((r) => r.data!);
  }
}

/** A graphql-ws client on Dispatch's /graphql, authenticated with `token` (or none). */
export function wsClient(
  baseUrl: string,
  token: string | undefined,
  options: { onClosed?: (event: { code: number; reason: string }) => void } = {},
): Client {
  return createClient({
    url: `${baseUrl.replace(/^http/, 'ws')}/graphql`,
    webSocketImpl: WebSocket,
    connectionParams: token === undefined ? {} : { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: false,
    // Errors surface through the feed; nothing is retried behind the test's back.
    shouldRetry: () => false,
    onNonLazyError: () => undefined,
    on: {
      closed: (event) => options.onClosed?.(event as { code: number; reason: string }),
    },
  });
}

/** Subscribes over graphql-ws; the feed collects every result until complete or error. */
export function subscribeWs<T>(
  client: Client,
  query: string,
  variables?: Record<string, unknown>,
): Feed<T> & { unsubscribe(): void } {
  const feed = new Feed<T>() as Feed<T> & { unsubscribe(): void };
  feed.unsubscribe = client.subscribe<T>(
    { query, variables },
    {
      next: (result) => feed.push(result as FeedResult<T>),
      error: (error) => {
        // graphql-ws hands protocol-level errors as an array of GraphQL errors, a close as a CloseEvent.
        if (Array.isArray(error)) feed.push({ errors: error as GraphQLErrorShape[] });
        feed.end(error);
      },
      complete: () => feed.end(),
    },
  );
  return feed;
}

/**
 * Subscribes over SSE (yoga's GraphQL over SSE, distinct connections mode):
 * a POST with Accept: text/event-stream, read as a stream of `event:`/`data:` blocks.
 */
export async function subscribeSse<T>(
  baseUrl: string,
  token: string | undefined,
  query: string,
  variables?: Record<string, unknown>,
): Promise<Feed<T> & { status: number; close(): void }> {
  const controller = new AbortController();
  const response = await fetch(`${baseUrl}/graphql`, {
    method: 'POST',
    headers: {
      accept: 'text/event-stream',
      'content-type': 'application/json',
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify({ query, variables }),
    signal: controller.signal,
  });
  const feed = new Feed<T>() as Feed<T> & { status: number; close(): void };
  feed.status = response.status;
  feed.close = () => controller.abort();
  if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    feed.push((await response.json()) as FeedResult<T>);
    feed.end();
    return feed;
  }
  void (async () => {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let split: number;
        while ((split = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, split);
          buffer = buffer.slice(split + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (event === 'complete') {
            feed.end();
            return;
          }
          if (data.length) feed.push(JSON.parse(data.join('\n')) as FeedResult<T>);
        }
      }
      feed.end();
    } catch (error) {
      feed.end(error);
    }
  })();
  return feed;
}

/** Live subscriptions of `field` open in the Dispatch process at `baseUrl`, read from its /metrics. */
export async function liveSubscribers(baseUrl: string, field: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  const match = new RegExp(`^dispatch_live_subscribers\\{field="${field}"\\} (\\d+)`, 'm').exec(text);
  return match ? Number(match[1]) : 0;
}

/**
 * A live-feed client as docs/live-feed.md describes it: subscribes over
 * graphql-ws, remembers the cursor of the last event, and whenever the
 * subscription or its socket ends, subscribes again on a new socket with
 * `after` set to that cursor. `field` names the subscription field; the
 * query must select `cursor` and take `$after: Cursor`.
 */
export function resumableWs<T extends { cursor: string }>(
  baseUrl: string,
  token: string,
  query: string,
  field: string,
  variables: Record<string, unknown>,
): { events: T[]; errors: GraphQLErrorShape[]; resubscribed: number; until: Feed<T>['until']; stop(): Promise<void> } {
  const feed = new Feed<T>();
  const state = {
    events: [] as T[],
    errors: [] as GraphQLErrorShape[],
    resubscribed: 0,
    cursor: undefined as string | undefined,
    stopped: false,
    client: undefined as Client | undefined,
  };
  const subscribe = () => {
    const client = wsClient(baseUrl, token);
    state.client = client;
    let again = false;
    const retry = () => {
      if (again || state.stopped) return;
      again = true;
      void client.dispose();
      state.resubscribed++;
      // A short pause, as a real client backs off.
      setTimeout(subscribe, 200);
    };
    client.subscribe<Record<string, T>>(
      { query, variables: { ...variables, after: state.cursor ?? null } },
      {
        next: (result) => {
          if (result.errors) state.errors.push(...(result.errors as GraphQLErrorShape[]));
          const event = result.data?.[field];
          if (event) {
            state.cursor = event.cursor;
            state.events.push(event);
          }
          feed.push({ data: event ?? null });
        },
        error: (error) => {
          if (Array.isArray(error)) state.errors.push(...(error as GraphQLErrorShape[]));
          retry();
        },
        complete: retry,
      },
    );
  };
  subscribe();
  return {
    get events() {
      return state.events;
    },
    get errors() {
      return state.errors;
    },
    get resubscribed() {
      return state.resubscribed;
    },
    until: (predicate, timeoutMs, what) => feed.until(() => predicate(feed), timeoutMs, what),
    async stop() {
      state.stopped = true;
      await state.client?.dispose();
    },
  };
}
