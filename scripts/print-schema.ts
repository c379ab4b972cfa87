// Prints the GraphQL schema from the code to schema.graphql; with --check,
// fails when schema.graphql is stale instead of writing it.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { schema } from '../src/graphql/schema.ts';
import { printSchemaText } from '../src/http/schema-route.ts';

const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../schema.graphql');
const printed = printSchemaText(schema);
if (process.argv.includes('--check')) {
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (current !== printed) {
    console.error('schema.graphql is stale: run `npm run schema:print` and commit the result.');
    process.exit(1);
  }
  console.log('schema.graphql matches the code.');
} else {
  writeFileSync(file, printed);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}
