/**
 * Threshold overrides in the database: what PUT /admin/thresholds records (src/db/repository.ts) and what a
 * service replays onto its bundle (thresholdOverrides), on PGlite always and on Postgres with DATABASE_URL;
 * and the 0001 migration on a database created by 0000 alone, with audit rows already in it.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, DEFAULT_MIGRATIONS_FOLDER, executeRows, type CreateDbOptions } from '../src/db/client.js';
import { createRepository, type NewThresholdChangeInput, type Repository } from '../src/db/repository.js';
import { DRIVERS, freshPostgresDatabase, openTestDb, type TestDb } from './helpers/db.js';

const change = (language: string, newThreshold: number, more: Partial<NewThresholdChangeInput> = {}): NewThresholdChangeInput => ({
  actor: 'alice',
  language,
  oldThreshold: null,
  newThreshold,
  bundleVersion: 'b1',
  ...more,
});

describe.each(DRIVERS)('threshold overrides on %s', (driver) => {
  let t: TestDb;
  let repo: Repository;
  beforeAll(async () => {
    t = await openTestDb(driver);
    repo = createRepository(t.handle.db);
  });
  afterAll(() => t?.dispose());

  it('are the latest change per language of one bundle version; a removal reads as null', async () => {
    expect(await repo.thresholdOverrides('b1')).toEqual({});
    await repo.recordThresholdChanges([change('en', 0.7), change('pooled', 0.4), change('de', 0.6)]);
    await repo.recordThresholdChange(change('en', 0.999, { oldThreshold: 0.7 }));
    await repo.recordThresholdChange(change('de', 0.4, { oldThreshold: 0.6, removed: true, reason: 'removed: falls back to pooled' }));
    await repo.recordThresholdChange(change('fr', 0.2, { bundleVersion: 'b2' }));
    await repo.recordThresholdChange(change('en', 0.1, { bundleVersion: null })); // a row of no known version: never replayed

    expect(await repo.thresholdOverrides('b1')).toEqual({ en: 0.999, pooled: 0.4, de: null });
    expect(await repo.thresholdOverrides('b2')).toEqual({ fr: 0.2 });
    expect(await repo.thresholdOverrides('b3')).toEqual({});
  });

  it('keep the exact value set (double precision), and the audit keeps who, when, old, new and reason', async () => {
    const at = new Date('2025-04-01T10:00:00Z');
    const [row] = await repo.recordThresholdChanges([change('it', 0.123456789, { bundleVersion: 'exact', oldThreshold: 0.987654321, reason: 'fp', at })]);
    expect(row).toMatchObject({ actor: 'alice', language: 'it', oldThreshold: 0.987654321, newThreshold: 0.123456789, reason: 'fp', createdAt: at, bundleVersion: 'exact', removed: false });
    expect(await repo.thresholdOverrides('exact')).toEqual({ it: 0.123456789 });
    expect((await repo.listThresholdChanges({ language: 'it' }))[0]).toEqual(row);
  });

  it('follow the order the database recorded them in, not the clocks of the replicas that sent them', async () => {
    // a replica whose clock runs ahead records first, a later change comes from one whose clock is behind
    await repo.recordThresholdChange(change('es', 0.8, { bundleVersion: 'clocks', at: new Date('2025-05-01T12:00:05Z') }));
    await repo.recordThresholdChange(change('es', 0.3, { bundleVersion: 'clocks', at: new Date('2025-05-01T12:00:00Z') }));
    expect(await repo.thresholdOverrides('clocks')).toEqual({ es: 0.3 });
  });

  it('records several changes in one statement: all or none', async () => {
    const rows = await repo.recordThresholdChanges([change('pl', 0.5, { bundleVersion: 'atomic' }), change('cs', 0.6, { bundleVersion: 'atomic' })]);
    expect(rows.map((r) => r.language)).toEqual(['pl', 'cs']);
    // the pooled threshold cannot be removed: the database refuses the row, and with it the whole batch
    await expect(
      repo.recordThresholdChanges([change('pl', 0.9, { bundleVersion: 'atomic' }), change('pooled', 0.5, { bundleVersion: 'atomic', removed: true })]),
    ).rejects.toThrow();
    expect(await repo.thresholdOverrides('atomic')).toEqual({ pl: 0.5, cs: 0.6 });
    expect(await repo.recordThresholdChanges([])).toEqual([]);
  });
});

/** A migrations folder holding only 0000, as the database was before 0001 existed. */
function initOnlyMigrations(dir: string): string {
  const folder = join(dir, 'migrations-0000');
  mkdirSync(join(folder, 'meta'), { recursive: true });
  const journal = JSON.parse(readFileSync(join(DEFAULT_MIGRATIONS_FOLDER, 'meta', '_journal.json'), 'utf8')) as { entries: { tag: string }[] };
  const init = journal.entries.filter((e) => e.tag === '0000_init');
  expect(init).toHaveLength(1);
  writeFileSync(join(folder, 'meta', '_journal.json'), JSON.stringify({ ...journal, entries: init }));
  copyFileSync(join(DEFAULT_MIGRATIONS_FOLDER, '0000_init.sql'), join(folder, '0000_init.sql'));
  return folder;
}

describe.each(DRIVERS)('migrating a 0000 database with audit rows on %s', (driver) => {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-db-upgrade-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the old rows (no bundle version, not removals, never replayed) and records new ones', async () => {
    const fresh = driver === 'postgres' ? await freshPostgresDatabase() : undefined;
    const target: CreateDbOptions = fresh ? { url: fresh.url } : { dataDir: dir };
    try {
      const old = await createDb({ ...target, migrationsFolder: initOnlyMigrations(dir) });
      await old.db.execute(
        sql`insert into threshold_changes (created_at, actor, language, old_threshold, new_threshold, reason) values ('2025-01-01T00:00:00Z', 'bob', 'en', 0.5, 0.75, 'before 0001')`,
      );
      await old.close();

      const upgraded = await createDb(target);
      try {
        const repo = createRepository(upgraded.db);
        const [legacy] = await repo.listThresholdChanges();
        expect(legacy).toMatchObject({ actor: 'bob', language: 'en', oldThreshold: 0.5, newThreshold: 0.75, reason: 'before 0001', bundleVersion: null, removed: false });
        const types = await executeRows<{ column_name: string; data_type: string }>(
          upgraded.db,
          sql`select column_name, data_type from information_schema.columns where table_name = 'threshold_changes' and column_name in ('old_threshold', 'new_threshold') order by column_name`,
        );
        expect(types.map((r) => r.data_type)).toEqual(['double precision', 'double precision']);
        await repo.recordThresholdChange(change('en', 0.6, { bundleVersion: 'b1', oldThreshold: 0.75 }));
        expect(await repo.thresholdOverrides('b1')).toEqual({ en: 0.6 });
      } finally {
        await upgraded.close();
      }
    } finally {
      await fresh?.drop();
    }
  });
});
