import { badInput } from './errors.ts';

/** Deepest nesting of arrays and objects a JSON input may have. */
export const MAX_JSON_DEPTH = 64;

/**
 * Refuses (BAD_USER_INPUT) a JSON input Dispatch could not store or handle
 * whole: nesting deeper than MAX_JSON_DEPTH (recursive code such as the
 * canonical hash and schema validation would overflow the stack; 10,000
 * levels answered INTERNAL_SERVER_ERROR), and text with a lone UTF-16
 * surrogate ("\ud800"), which is not Unicode and which PostgreSQL's jsonb
 * refuses. One pass, without recursion.
 */
export function checkJsonValue(value: unknown, what = 'JSON value'): void {
  const stack: { value: unknown; depth: number }[] = [{ value, depth: 0 }];
  while (stack.length) {
    const { value: current, depth } = stack.pop()!;
    if (typeof current === 'string') {
      if (LONE_SURROGATE.test(current)) throw loneSurrogate(what);
      continue;
    }
    if (current === null || typeof current !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) throw badInput(`${what} is nested deeper than ${MAX_JSON_DEPTH} levels`);
    if (Array.isArray(current)) {
      for (const item of current) stack.push({ value: item, depth: depth + 1 });
      continue;
    }
    for (const key in current) {
      if (LONE_SURROGATE.test(key)) throw loneSurrogate(what);
      stack.push({ value: (current as Record<string, unknown>)[key], depth: depth + 1 });
    }
  }
}

// With the u flag a surrogate pair is one code point, so only a lone surrogate is in Cs.
const LONE_SURROGATE = /\p{Cs}/u;

const loneSurrogate = (what: string) =>
  badInput(`${what} has text with a lone UTF-16 surrogate (such as "\\ud800"), which is not Unicode`);
