/**
 * The worker-thread side of schema validation (src/domain/schema-validation.ts
 * runs a pool of these): compiling an operator's JSON Schema and checking
 * data against it can take seconds for a large schema or payload, which here
 * holds one worker thread, never the API's event loop.
 */
import type { MessagePort } from 'node:worker_threads';
import type { ValidateFunction } from 'ajv';
import { compileSchema, problemsOf, type SchemaProblem } from './json-schema.ts';

export type SchemaTask = (
  | { kind: 'compile'; schemaText: string }
  | { kind: 'validate'; items: { key: string; schemaText: string; dataText: string }[] }
) & {
  /** Told when the task starts: its time limit counts from then, not from waiting for a thread. */
  started: MessagePort;
};

/** Per item of a `validate` task: its problems, or why its schema cannot be used. */
export type ValidateOutcome = { problems: SchemaProblem[] } | { unusable: string };

const MAX_CACHED = 1000;
const cache = new Map<string, ValidateFunction>();

function validatorFor(key: string, schemaText: string): ValidateFunction {
  let validate = cache.get(key);
  if (!validate) {
    validate = compileSchema(JSON.parse(schemaText));
    if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value as string);
    cache.set(key, validate);
  }
  return validate;
}

export default function run(task: SchemaTask): ValidateOutcome[] {
  task.started.postMessage(null);
  task.started.close();
  if (task.kind === 'compile') {
    try {
      compileSchema(JSON.parse(task.schemaText));
      return [{ problems: [] }];
    } catch (error) {
      return [{ unusable: (error as Error).message }];
    }
  }
  return task.items.map((item) => {
    let validate: ValidateFunction;
    try {
      validate = validatorFor(item.key, item.schemaText);
    } catch (error) {
      return { unusable: (error as Error).message };
    }
    return { problems: problemsOf(validate, JSON.parse(item.dataText)) };
  });
}
