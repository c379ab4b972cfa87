import { NUL_MESSAGE } from '../graphql/errors.ts';

export { NUL_MESSAGE };

/**
 * Whether a JSON body has a string with a NUL character (the escape \u0000,
 * itself not escaped): refused up front, before any of it is stored. Most
 * bodies have no "\u0000" at all, found without making a string of them.
 */
export function hasNulCharacter(json: Buffer): boolean {
  return json.includes(NUL_TEXT) && NUL_ESCAPE.test(json.toString('latin1'));
}
const NUL_TEXT = '\\u0000';
const NUL_ESCAPE = /(?<!\\)(?:\\\\)*\\u0000/;
