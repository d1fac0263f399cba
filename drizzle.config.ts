import { defineConfig } from 'drizzle-kit';

// `npx drizzle-kit generate` writes SQL migrations for src/db/schema.ts into migrations/;
// src/db/client.ts applies them with drizzle's migrate() on PGlite and on postgres.js alike.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/db/schema.ts',
  out: './migrations',
  casing: 'snake_case',
  strict: true,
  verbose: false,
});
