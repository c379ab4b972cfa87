import { defineConfig } from 'prisma/config';

// Dispatch applies migrations itself (src/db/migrate.ts); this config only tells
// Prisma's CLI where the schema and migrations are, for `prisma generate`.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost/dispatch' },
});
