import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';

/**
 * Deepest nesting of braces, brackets and parentheses a document may have.
 * graphql-js parses recursively: a document nested 10,000 deep overflowed
 * the stack and answered INTERNAL_SERVER_ERROR. Selections are limited to 12
 * levels and JSON values to 64 after parsing; this bound comes first.
 */
export const MAX_DOCUMENT_NESTING = 100;

/** How deep the document's brackets nest, strings and comments skipped; stops counting past `limit`. */
export function documentNesting(source: string, limit = MAX_DOCUMENT_NESTING): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < source.length; i++) {
    const c = source.charCodeAt(i);
    if (c === 0x7b || c === 0x5b || c === 0x28) {
      // { [ (
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > limit) return deepest;
      }
    } else if (c === 0x7d || c === 0x5d || c === 0x29) {
      if (depth > 0) depth--;
    } else if (c === 0x23) {
      // # comment, to the end of the line
      while (i < source.length && source.charCodeAt(i) !== 0x0a && source.charCodeAt(i) !== 0x0d) i++;
    } else if (c === 0x22) {
      if (source.startsWith('"""', i)) {
        const end = source.indexOf('"""', i + 3);
        // Block strings escape """ as \"""; skip to a closing quote triple not preceded by a backslash.
        let close = end;
        while (close !== -1 && source.charCodeAt(close - 1) === 0x5c) close = source.indexOf('"""', close + 3);
        i = close === -1 ? source.length : close + 2;
      } else {
        i++;
        while (i < source.length) {
          const s = source.charCodeAt(i);
          if (s === 0x5c) i += 2;
          else if (s === 0x22 || s === 0x0a || s === 0x0d) break;
          else i++;
        }
      }
    }
  }
  return deepest;
}

/** Refuses, before parsing, a document nested deeper than MAX_DOCUMENT_NESTING (BAD_USER_INPUT, HTTP 400). */
export function documentNestingPlugin(): Plugin {
  return {
    onParse({ params }) {
      const source = typeof params.source === 'string' ? params.source : params.source.body;
      if (documentNesting(source) > MAX_DOCUMENT_NESTING) {
        throw new GraphQLError(`the document is nested deeper than ${MAX_DOCUMENT_NESTING} levels`, {
          extensions: { code: 'BAD_USER_INPUT', http: { status: 400 } },
        });
      }
    },
  };
}
