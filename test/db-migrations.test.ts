import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { createDb, DEFAULT_MIGRATIONS_FOLDER, executeRows, type Database } from '../src/db/client.js';
import { createRepository } from '../src/db/repository.js';
import { DATABASE_URL, DRIVERS, freshPostgresDatabase, openTestDb, predictionRow } from './helpers/db.js';

const TABLES = ['admin_events', 'f1_windows', 'feedback', 'predictions', 'threshold_changes'];
/** every migration drizzle-kit has generated (migrations/meta/_journal.json) */
const MIGRATIONS = (JSON.parse(readFileSync(join(DEFAULT_MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as { entries: unknown[] }).entries.length;

async function userTables(db: Database): Promise<string[]> {
  const rows = await executeRows<{ table_name: string }>(
    db,
    sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`,
  );
  return rows.map((r) => r.table_name);
}

async function appliedMigrations(db: Database): Promise<number> {
  const rows = await executeRows<{ n: number }>(db, sql`select count(*)::int as n from drizzle.__drizzle_migrations`);
  return Number(rows[0].n);
}

const sample = {
  id: 'p-1',
  requestId: 'r-1',
  createdAt: new Date('2025-01-01T00:00:00Z'),
  language: 'en',
  languageSource: 'hint' as const,
  score: 0.9,
  threshold: 0.5,
  label: true,
  bundleVersion: 'b1',
  textSha256: 'ab'.repeat(32),
};

describe('migrations on a persisted PGlite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-db-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates every table, and reopening the same data directory re-applies nothing and keeps the rows', async () => {
    const first = await createDb({ dataDir: dir });
    expect(first.driver).toBe('pglite');
    expect(await userTables(first.db)).toEqual(TABLES);
    expect(await appliedMigrations(first.db)).toBe(MIGRATIONS);
    await createRepository(first.db).insertPredictions([sample]);
    await first.close();

    const second = await createDb({ dataDir: dir });
    expect(await appliedMigrations(second.db)).toBe(MIGRATIONS);
    await second.migrate(); // explicit re-run: a no-op
    expect(await appliedMigrations(second.db)).toBe(MIGRATIONS);
    const rows = await executeRows<{ id: string }>(second.db, sql`select id from predictions`);
    expect(rows.map((r) => r.id)).toEqual(['p-1']);
    await second.close();
  });

  it('rejects a language_source outside hint/detected/fallback at the database', async () => {
    const h = await createDb({ dataDir: dir });
    try {
      await expect(
        createRepository(h.db).insertPredictions([{ ...sample, id: 'p-2', languageSource: 'guess' as 'hint' }]),
      ).rejects.toThrow();
    } finally {
      await h.close();
    }
  });
});

describe.skipIf(!DATABASE_URL)('migrations on the real Postgres server (DATABASE_URL)', () => {
  it('apply to a fresh database and re-applying from a second connection is a no-op', async () => {
    const fresh = await freshPostgresDatabase();
    try {
      const a = await createDb({ url: fresh.url });
      expect(a.driver).toBe('postgres');
      expect(await userTables(a.db)).toEqual(TABLES);
      expect(await appliedMigrations(a.db)).toBe(MIGRATIONS);
      await a.close();
      const b = await createDb({ url: fresh.url });
      await b.migrate();
      expect(await appliedMigrations(b.db)).toBe(MIGRATIONS);
      expect(await userTables(b.db)).toEqual(TABLES);
      await b.close();
    } finally {
      await fresh.drop();
    }
  });
});

describe('createDb arguments', () => {
  it('refuses to guess when given neither a url nor a dataDir', async () => {
    await expect(createDb({})).rejects.toThrow(/url \(DATABASE_URL\) or a dataDir/);
  });
});

describe.each(DRIVERS)("suggestscore's lookup by text hash (%s)", (driver) => {
  it('is served by the (text_sha256, created_at) index, not a scan of the time window', async () => {
    const t = await openTestDb(driver);
    try {
      const indexes = await executeRows<{ indexdef: string }>(
        t.handle.db,
        sql`select indexdef from pg_indexes where tablename = 'predictions' and indexname = 'predictions_text_sha256_created_at_idx'`,
      );
      expect(indexes).toHaveLength(1);
      expect(indexes[0].indexdef).toMatch(/\(text_sha256, created_at\)/);

      // 4,000 predictions of distinct texts in one hour: the window alone would select all of them
      const at = new Date('2025-03-01T11:00:00Z');
      const rows = Array.from({ length: 4000 }, (_, i) =>
        predictionRow({ createdAt: new Date(at.getTime() + i * 500), textSha256: createHash('sha256').update(`text ${i}`).digest('hex') }),
      );
      const repo = createRepository(t.handle.db);
      for (let i = 0; i < rows.length; i += 500) await repo.insertPredictions(rows.slice(i, i + 500));
      await executeRows(t.handle.db, sql`analyze predictions`);
      const wanted = rows[1234].textSha256;
      const plan = await executeRows<{ 'QUERY PLAN': string }>(
        t.handle.db,
        sql`explain select id from predictions where text_sha256 = ${wanted} and created_at >= ${at.toISOString()}`,
      );
      expect(plan.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/predictions_text_sha256_created_at_idx/);
      expect(await repo.predictionForText(wanted, at)).toEqual({ id: rows[1234].id, candidates: 1 });
    } finally {
      await t.dispose();
    }
  });
});
