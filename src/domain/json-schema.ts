import { sample } from '@stoplight/json-schema-sampler';
import { Ajv, type Options, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { RE2JS } from 're2js';
import { canonicalJson } from './canonical-json.ts';
import { badInput } from './errors.ts';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => void;

/** Most bytes of an event type's schema (serialized): validation work grows with the schema's size. */
export const MAX_SCHEMA_BYTES = 64 * 1024;

/**
 * Schema patterns (`pattern`, `patternProperties`) run on RE2 (re2js, a
 * JavaScript port): matching is linear in the string, so no pattern can
 * backtrack for seconds on the API's event loop, as `^(a+)+$` did on
 * JavaScript's own engine (2.7 s for 28 characters). RE2 has no lookaround
 * or backreferences: a schema using them is refused when it is saved.
 */
const re2: NonNullable<NonNullable<Options['code']>['regExp']> = Object.assign(
  (pattern: string) => {
    const compiled = RE2JS.compile(RE2JS.translateRegExp(pattern));
    // ajv keys compiled patterns by toString().
    return { test: (text: string) => compiled.test(text), toString: () => `re2:${pattern}` };
  },
  { code: 're2js' },
);

const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: true, code: { regExp: re2 } });
addFormats(ajv);

// ajv compares items pairwise when they are not all of one scalar type: 20,000
// objects took 20 s. Items are told apart by their canonical JSON instead
// (keys sorted: JSON Schema equality ignores their order), in one pass.
ajv.removeKeyword('uniqueItems');
ajv.addKeyword({
  keyword: 'uniqueItems',
  type: 'array',
  schemaType: 'boolean',
  validate: function uniqueItems(this: unknown, schema: boolean, data: unknown[]): boolean {
    if (!schema) return true;
    const seen = new Map<string, number>();
    for (let i = 0; i < data.length; i++) {
      const key = canonicalJson(data[i]);
      const j = seen.get(key);
      if (j !== undefined) {
        (uniqueItems as { errors?: object[] }).errors = [
          {
            keyword: 'uniqueItems',
            message: `must NOT have duplicate items (items ## ${j} and ${i} are identical)`,
            params: { i, j },
          },
        ];
        return false;
      }
      seen.set(key, i);
    }
    return true;
  },
});

/** Most `pattern`s and `patternProperties` keys in one schema: RE2 compiles each in about 4 ms. */
export const MAX_SCHEMA_PATTERNS = 100;

/**
 * The checks of an event type's schema that are cheap: a JSON object, at most
 * MAX_SCHEMA_BYTES, at most MAX_SCHEMA_PATTERNS patterns (BAD_USER_INPUT).
 * Compiling it (schema-validation.ts, on a worker thread) checks the rest.
 */
export function checkSchemaShape(schema: unknown): string {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw badInput('schema must be a JSON Schema object');
  }
  const text = JSON.stringify(schema);
  const size = Buffer.byteLength(text);
  if (size > MAX_SCHEMA_BYTES) throw badInput(`schema is ${size} bytes; the limit is ${MAX_SCHEMA_BYTES}`);
  const patterns = countPatterns(schema);
  if (patterns > MAX_SCHEMA_PATTERNS) {
    throw badInput(`schema has ${patterns} patterns; the limit is ${MAX_SCHEMA_PATTERNS}`);
  }
  return text;
}

function countPatterns(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  let count = 0;
  for (const [key, child] of Object.entries(value)) {
    if (key === 'pattern' && typeof child === 'string') count++;
    else if (key === 'patternProperties' && child !== null && typeof child === 'object' && !Array.isArray(child)) {
      count += Object.keys(child).length;
    }
    count += countPatterns(child);
  }
  return count;
}

/** Compiles a schema; throws an Error whose message says what is wrong with it. */
export function compileSchema(schema: object): ValidateFunction {
  try {
    return ajv.compile(schema);
  } catch (error) {
    throw new Error(describe(error));
  }
}

function describe(error: unknown): string {
  const message = (error as Error).message;
  // re2js names the construct it does not support (lookahead, backreference, …).
  return (error as Error).name === 'RE2JSSyntaxException' || /error parsing regexp/i.test(message)
    ? `a pattern cannot run on RE2, the linear-time engine schema patterns use (no lookaround or backreferences): ${message}`
    : message;
}

export interface SchemaProblem {
  path: string;
  message: string;
}

/** Checks data with a compiled schema; returns the problems (empty when valid), at most 20. */
export function problemsOf(validate: ValidateFunction, data: unknown): SchemaProblem[] {
  if (validate(data)) return [];
  return (validate.errors ?? [])
    .slice(0, 20)
    .map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'is invalid' }));
}

/**
 * An example of data for a schema: its first `examples` entry, else one made from the schema (its
 * properties' examples, defaults, enums and formats), so a test event can be sent without writing one.
 */
export function exampleOf(schema: unknown): unknown {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return {};
  const examples = (schema as { examples?: unknown }).examples;
  if (Array.isArray(examples) && examples.length) return examples[0];
  try {
    return sample(schema as Parameters<typeof sample>[0], { skipReadOnly: true, quiet: true });
  } catch {
    // A schema the sampler cannot follow (e.g. an unresolvable $ref) has no example to offer.
    return {};
  }
}
