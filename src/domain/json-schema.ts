import { sample } from '@stoplight/json-schema-sampler';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { badInput } from './errors.ts';

// ajv-formats is CommonJS; its default export arrives wrapped under ESM.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv) => void;

const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: true });
addFormats(ajv);

const MAX_CACHED = 1000;
const cache = new Map<string, ValidateFunction>();

/** Rejects a JSON Schema that is not itself valid (BAD_USER_INPUT). */
export function checkJsonSchema(schema: unknown): void {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw badInput('schema must be a JSON Schema object');
  }
  try {
    ajv.compile(schema as object);
  } catch (error) {
    throw badInput(`schema is not a valid JSON Schema: ${(error as Error).message}`);
  }
}

export interface SchemaProblem {
  path: string;
  message: string;
}

/**
 * Validates data against a schema; returns the problems (empty when valid).
 * Compiled validators are cached by `key` (an event type id and version).
 */
export function validateAgainstSchema(key: string, schema: object, data: unknown): SchemaProblem[] {
  let validate = cache.get(key);
  if (!validate) {
    validate = ajv.compile(schema);
    if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
    cache.set(key, validate);
  }
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
