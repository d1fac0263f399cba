import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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

/** The migrations folder as it was before `tag` (the journal cut there): a database as an older version left it. */
function migrationsBefore(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-migrations-'));
  cpSync(DEFAULT_MIGRATIONS_FOLDER, dir, { recursive: true });
  const journal = JSON.parse(readFileSync(join(dir, 'meta', '_journal.json'), 'utf8')) as { entries: { tag: string }[] };
  const cut = journal.entries.findIndex((e) => e.tag === tag);
  expect(cut).toBeGreaterThan(0);
  journal.entries = journal.entries.slice(0, cut);
  writeFileSync(join(dir, 'meta', '_journal.json'), JSON.stringify(journal));
  return dir;
}

/** Rows written before attributes existed, then the attributes migration: everything reads as toxicity's. */
async function upgradeKeepsRows(open: (migrationsFolder?: string) => Promise<Awaited<ReturnType<typeof createDb>>>): Promise<void> {
  const old = migrationsBefore('0004_attributes');
  try {
    const before = await open(old);
    await before.db.execute(sql`insert into predictions (id, request_id, created_at, language, language_source, score, threshold, label, bundle_version, text_sha256)
      values ('old-1', 'r', '2025-01-01T00:00:00Z', 'en', 'hint', 0.9, 0.5, true, 'b1', ${'ab'.repeat(32)})`);
    await before.db.execute(sql`insert into feedback (prediction_id, label, source, created_at, updated_at) values ('old-1', false, 'mod', now(), now())`);
    await before.db.execute(sql`insert into threshold_changes (created_at, actor, language, old_threshold, new_threshold, bundle_version) values (now(), 'ops', 'en', 0.5, 0.7, 'b1')`);
    await before.db.execute(sql`insert into f1_windows (language, window_start, window_end, n, tp, fp, fn, tn, computed_at) values ('en', '2025-01-01T00:00:00Z', '2025-01-02T00:00:00Z', 1, 0, 1, 0, 0, now())`);
    await before.close();

    const after = await open();
    const repo = createRepository(after.db);
    const window = [new Date('2025-01-01T00:00:00Z'), new Date('2025-01-02T00:00:00Z')] as const;
    expect(await repo.confusionByLanguage(...window)).toEqual([{ language: 'en', tp: 0, fp: 1, fn: 0, tn: 0 }]);
    expect(await repo.confusionByLanguage(...window, undefined, { attribute: 'insult' })).toEqual([]); // never scored
    expect(await repo.thresholdOverrides('b1')).toEqual({ en: 0.7 });
    expect(await repo.attributeOverrides('b1')).toEqual({ toxicity: { en: 0.7 } });
    expect((await repo.latestF1Windows('en')).map((w) => [w.attribute, w.fp])).toEqual([['toxicity', 1]]);
    const fb = await executeRows<{ attribute: string; label: boolean }>(after.db, sql`select attribute, label from feedback`);
    expect(fb).toEqual([{ attribute: 'toxicity', label: false }]);
    // and the old prediction can take a label for another attribute beside its toxicity label
    expect(await repo.recordFeedback([{ predictionId: 'old-1', attribute: 'insult', label: true, source: 'mod' }])).toEqual([{ predictionId: 'old-1', attribute: 'insult', status: 'stored' }]);
    await after.close();
  } finally {
    rmSync(old, { recursive: true, force: true });
  }
}

describe('the attributes migration (0004) on a database written by the previous version', () => {
  it('PGlite: old predictions, feedback, threshold changes and F1 windows stay readable as toxicity', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'toxscope-db-upgrade-'));
    try {
      await upgradeKeepsRows((migrationsFolder) => createDb({ dataDir: dir, migrationsFolder }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!DATABASE_URL)('Postgres: the same', async () => {
    const fresh = await freshPostgresDatabase();
    try {
      await upgradeKeepsRows((migrationsFolder) => createDb({ url: fresh.url, migrationsFolder }));
    } finally {
      await fresh.drop();
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
