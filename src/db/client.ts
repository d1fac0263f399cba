/**
 * Database handle factory: postgres.js when a URL is given, otherwise the embedded PGlite, persisted under
 * `<dataDir>/pglite` (or in memory for `dataDir: 'memory://'`). The same drizzle-kit migrations are applied to
 * both at open. Nothing here reads process.env: src/config.ts passes DATABASE_URL and the data directory in.
 *
 * The embedded PGlite runs on a worker thread (src/db/pglite-worker.ts): its creation, its migrations and its
 * queries never hold the event loop; drizzle talks to it through PgliteWorkerClient.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PGlite } from '@electric-sql/pglite';
import type { SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { ToxScopeError } from '../errors.js';
import { PgliteWorkerClient } from './pglite-worker.js';
import * as schema from './schema.js';

/** The drizzle instance both drivers share: every query in src/db is written against this type. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

export interface DbHandle {
  readonly db: Database;
  readonly driver: 'postgres' | 'pglite';
  /** Why this handle can never answer again (the embedded database's worker thread died), or null. */
  failure?(): string | null;
  /** Applies migrations/ (idempotent: already-applied migrations are skipped). createDb runs it unless told not to. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}

export interface CreateDbOptions {
  /** postgres:// URL of a real server (DATABASE_URL). Takes precedence over dataDir. */
  url?: string;
  /** Directory for the embedded PGlite (data in `<dataDir>/pglite`), or 'memory://' for an in-memory one. */
  dataDir?: string;
  /** Apply migrations on open (default true). */
  migrate?: boolean;
  /** postgres.js pool size (default 10). */
  maxConnections?: number;
  /** postgres.js connect timeout in seconds (default 10). */
  connectTimeoutSeconds?: number;
  /** Migrations folder; defaults to the repository's migrations/. */
  migrationsFolder?: string;
}

export const DEFAULT_MIGRATIONS_FOLDER = fileURLToPath(new URL('../../migrations', import.meta.url));

export async function createDb(options: CreateDbOptions): Promise<DbHandle> {
  const migrationsFolder = options.migrationsFolder ?? DEFAULT_MIGRATIONS_FOLDER;
  const handle = options.url
    ? openPostgres(options.url, options, migrationsFolder)
    : await openPglite(options.dataDir, migrationsFolder);
  if (options.migrate !== false) {
    try {
      await handle.migrate();
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw new ToxScopeError(
        'unavailable',
        `applying migrations from ${migrationsFolder} on ${handle.driver} failed: ${errorText(e)}`,
        { driver: handle.driver, migrationsFolder },
        { cause: e },
      );
    }
  }
  return handle;
}

function openPostgres(url: string, options: CreateDbOptions, migrationsFolder: string): DbHandle {
  let client: postgres.Sql;
  try {
    client = postgres(url, {
      max: options.maxConnections ?? 10,
      connect_timeout: options.connectTimeoutSeconds ?? 10,
      onnotice: () => undefined, // "relation already exists, skipping" from re-applied migrations
    });
  } catch (e) {
    throw new ToxScopeError('validation', `DATABASE_URL is not a usable postgres:// URL: ${errorText(e)}`, {
      field: 'DATABASE_URL',
    });
  }
  const db = drizzlePostgres({ client, schema, casing: 'snake_case' });
  return {
    db: db as unknown as Database,
    driver: 'postgres',
    migrate: () => migratePostgres(db, { migrationsFolder }),
    close: () => client.end({ timeout: 5 }),
  };
}

async function openPglite(dataDir: string | undefined, migrationsFolder: string): Promise<DbHandle> {
  if (!dataDir) {
    throw new ToxScopeError('validation', 'createDb needs either a url (DATABASE_URL) or a dataDir for PGlite', {
      field: 'dataDir',
    });
  }
  const location = dataDir === 'memory://' ? dataDir : join(dataDir, 'pglite');
  let client: PgliteWorkerClient;
  try {
    client = await PgliteWorkerClient.open(location);
  } catch (e) {
    throw new ToxScopeError('unavailable', `opening PGlite at ${location} failed: ${errorText(e)}`, { dataDir }, { cause: e });
  }
  // drizzle-orm/pglite uses query(sql, params, { rowMode, parsers }) and transaction(): the worker client speaks both
  const db = drizzlePglite({ client: client as unknown as PGlite, schema, casing: 'snake_case' });
  return {
    db: db as unknown as Database,
    driver: 'pglite',
    failure: () => client.failure(),
    migrate: () => client.migrate(migrationsFolder),
    close: () => client.close(),
  };
}

/**
 * Runs raw SQL and returns its rows on either driver (`db.execute` yields an array on postgres.js and
 * `{ rows }` on PGlite).
 */
export async function executeRows<T extends Record<string, unknown>>(db: Database, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as T[] | { rows: T[] };
  return Array.isArray(result) ? result : result.rows;
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const cause = e.cause instanceof Error ? `: ${e.cause.message}` : '';
    return `${e.message}${cause}`;
  }
  return String(e);
}
