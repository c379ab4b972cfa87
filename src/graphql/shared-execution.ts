import { createSourceEventStream, type DocumentNode, type ExecutionArgs, type ExecutionResult, execute } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { GraphQLContext } from './context.ts';

/**
 * Runs each subscription event's selection once for all subscribers that
 * would get the same answer. Executing the selection and the executor's
 * per-result machinery, per subscriber and event, was most of the API's CPU
 * with 50 subscribers of one feed at 1,000 events/s.
 *
 * Subscribers get the same answer when they hold the same credential (one
 * API key, or one portal session: the same visibility), sent the same
 * document with the same variables, and their source streams yield the same
 * event object: the live feed hands one object per event and selection to
 * all of them (FeedRow in live/feed.ts). Results are kept in a WeakMap on that
 * object, so they live exactly as long as some subscriber still holds it.
 * Everything else (queues, back-pressure, scope and credential checks) stays
 * per subscriber.
 */
const results = new WeakMap<object, Map<string, Promise<ExecutionResult> | ExecutionResult>>();
const documentIds = new WeakMap<DocumentNode, number>();
let documents = 0;

function shareKey(args: ExecutionArgs): string | undefined {
  const actor = (args.contextValue as Partial<GraphQLContext> | undefined)?.actor;
  if (!actor) return undefined;
  let documentId = documentIds.get(args.document);
  if (documentId === undefined) {
    documentId = ++documents;
    documentIds.set(args.document, documentId);
  }
  const credential = actor.kind === 'portal' ? `portal:${actor.sessionId}` : `key:${actor.apiKeyId}`;
  return `${credential}\u0000${documentId}\u0000${args.operationName ?? ''}\u0000${JSON.stringify(args.variableValues ?? {})}`;
}

/** The event's result for this key, executed by whichever subscriber asks first. */
function executeShared(args: ExecutionArgs, key: string, payload: unknown): Promise<ExecutionResult> | ExecutionResult {
  if (typeof payload !== 'object' || payload === null) return execute({ ...args, rootValue: payload });
  let byKey = results.get(payload);
  if (!byKey) {
    byKey = new Map();
    results.set(payload, byKey);
  }
  let result = byKey.get(key);
  if (!result) {
    result = execute({ ...args, rootValue: payload });
    byKey.set(key, result);
  }
  return result;
}

/**
 * The source stream mapped to results. return() and throw() go straight to
 * the source, so a subscriber leaving ends its queue at once, not at the
 * next event.
 */
function mapped(
  source: AsyncIterator<unknown>,
  map: (payload: unknown) => Promise<ExecutionResult> | ExecutionResult,
): AsyncIterableIterator<ExecutionResult> {
  return {
    async next() {
      const step = await source.next();
      return step.done ? { done: true, value: undefined } : { done: false, value: await map(step.value) };
    },
    async return() {
      await source.return?.();
      return { done: true, value: undefined };
    },
    async throw(error?: unknown) {
      if (source.throw) await source.throw(error);
      throw error;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

async function sharedSubscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!(Symbol.asyncIterator in source)) return source as ExecutionResult;
  const key = shareKey(args);
  const iterator = (source as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  return mapped(iterator, (payload) =>
    key === undefined ? execute({ ...args, rootValue: payload }) : executeShared(args, key, payload),
  );
}

/** The yoga plugin: subscriptions (over graphql-ws and SSE alike) subscribe through sharedSubscribe. */
export function sharedSubscriptionExecution(): Plugin {
  return {
    onSubscribe({ setSubscribeFn }) {
      setSubscribeFn(sharedSubscribe as never);
    },
  };
}
