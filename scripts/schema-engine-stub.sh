#!/bin/sh
# Prisma's CLI wants a schema-engine binary it cannot download here. `prisma
# generate` never runs it; migrations are applied by src/db/migrate.ts.
echo "schema-engine is not available: Dispatch applies its own SQL migrations (npx dispatch migrate)" >&2
exit 1
