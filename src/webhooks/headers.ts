/**
 * What an endpoint's custom header may be: the rule endpoints are checked
 * against when they are saved, and the one the sender applies before each
 * request, so a header that was accepted can always be sent.
 */

/** An HTTP header name: an RFC 9110 token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * A character an HTTP field value may not hold: anything but tab, visible
 * ASCII, space and obs-text (U+0080 to U+00FF, sent as one byte each). Node's
 * and undici's own check: control characters (\x01, DEL), line breaks and
 * characters beyond U+00FF are refused by the HTTP client, on every attempt.
 */
const INVALID_VALUE_CHARACTER = /[^\t\x20-\x7e\x80-\xff]/;

/** Why a header cannot be sent as given, or undefined when it can. */
export function headerProblem(name: string, value: unknown): string | undefined {
  const shown = JSON.stringify(name.slice(0, 100));
  if (!HEADER_NAME.test(name)) return `header name ${shown} is not a valid HTTP header name`;
  if (typeof value !== 'string') return `header ${shown} must have a string value`;
  const bad = INVALID_VALUE_CHARACTER.exec(value);
  if (bad) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    return `header ${shown} has a character HTTP does not allow in a value (U+${code} at ${bad.index}): control characters, line breaks and characters beyond U+00FF cannot be sent`;
  }
  return undefined;
}
