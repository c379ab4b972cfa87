import { expect } from 'vitest';
import type { DispatchClient, GraphQLErrorShape } from '../../packages/client/src/index.ts';

type RawResult = { data?: Record<string, unknown> | null; errors?: GraphQLErrorShape[]; status: number };

/** The extensions.code of every error of a response, in order. */
export const codesOf = (result: RawResult) => (result.errors ?? []).map((e) => e.extensions?.code);

/**
 * Runs raw GraphQL and asserts it failed with exactly one error of `code`
 * (never INTERNAL_SERVER_ERROR); returns the response for further checks.
 */
export async function expectError(
  client: DispatchClient,
  code: string,
  query: string,
  variables?: Record<string, unknown>,
): Promise<RawResult> {
  const result = await client.raw(query, variables);
  expect(codesOf(result), JSON.stringify(result.errors)).toEqual([code]);
  return result;
}
