/**
 * bench migrate-attributes: what migration 0004_attributes costs on a database the previous version filled. On a
 * fresh database (created on the server of --url / DATABASE_URL and dropped afterwards): migrations up to 0003, then
 * --predictions rows with one toxicity feedback row for every --feedback-every-th prediction, --windows F1 windows and
 * --changes threshold changes (all in SQL, generate_series); then 0004 is applied and timed. The ADD COLUMNs with a
 * constant default are catalog-only on Postgres 11+; the feedback primary key and the two indexes are rebuilt, holding
 * an ACCESS EXCLUSIVE lock on those tables meanwhile. Also timed: toxicity's confusion query over the same rows with
 * the previous version's SQL (before) and the repository's per-attribute SQL (after, once analyzed), best of three each;
 * then every row gets an insult entry in predictions.attributes and every labeled one an insult label, and insult's
 * confusion (read from the jsonb) and toxicity's again are timed.
 *
 *   npm run -s bench -- migrate-attributes [--json] [--url postgres://...] [--predictions 200000] [--feedback-every 4]
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { parseFlags, parseIntFlag, UsageError } from '../src/cli/args.js';
import { createDb, DEFAULT_MIGRATIONS_FOLDER, executeRows } from '../src/db/client.js';
import { createRepository } from '../src/db/repository.js';

const FLAGS = {
  json: { type: 'boolean', default: false },
  url: { type: 'string' },
  predictions: { type: 'string', default: '200000' },
  'feedback-every': { type: 'string', default: '4' },
  windows: { type: 'string', default: '10000' },
  changes: { type: 'string', default: '1000' },
} as const;

const ms = (t0: bigint) => Math.round(Number(process.hrtime.bigint() - t0) / 1e5) / 10;

/** The migrations folder cut before `tag`. */
function migrationsBefore(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'toxscope-bench-migrations-'));
  cpSync(DEFAULT_MIGRATIONS_FOLDER, dir, { recursive: true });
  const journal = JSON.parse(readFileSync(join(dir, 'meta', '_journal.json'), 'utf8')) as { entries: { tag: string }[] };
  const cut = journal.entries.findIndex((e) => e.tag === tag);
  if (cut < 1) throw new Error(`migration ${tag} not found`);
  journal.entries = journal.entries.slice(0, cut);
  writeFileSync(join(dir, 'meta', '_journal.json'), JSON.stringify(journal));
  return dir;
}

export async function run(argv: string[]): Promise<number> {
  const flags = parseFlags(argv, FLAGS);
  const url = (flags.url as string | undefined) ?? process.env.DATABASE_URL;
  if (!url) throw new UsageError('bench migrate-attributes needs a Postgres server: --url postgres://... or DATABASE_URL');
  const n = parseIntFlag(flags.predictions as string, 'predictions', 1);
  const every = parseIntFlag(flags['feedback-every'] as string, 'feedback-every', 1);
  const windows = parseIntFlag(flags.windows as string, 'windows', 0);
  const changes = parseIntFlag(flags.changes as string, 'changes', 0);

  const name = `toxscope_bench_migrate_${Date.now()}`;
  const admin = postgres(url, { max: 1, onnotice: () => undefined });
  await admin.unsafe(`CREATE DATABASE "${name}"`);
  const dbUrl = new URL(url);
  dbUrl.pathname = `/${name}`;
  const old = migrationsBefore('0004_attributes');
  try {
    const before = await createDb({ url: dbUrl.toString(), migrationsFolder: old });
    let t0 = process.hrtime.bigint();
    await before.db.execute(sql`insert into predictions (id, request_id, created_at, language, language_source, score, threshold, label, bundle_version, text_sha256)
      select 'p-' || i, 'r-' || i, now() - (i || ' seconds')::interval, (array['en','de','fr','es','pt'])[1 + i % 5], 'detected', (i % 100) / 100.0, 0.5, i % 100 >= 50, 'bench', md5(i::text) || md5(i::text)
      from generate_series(1, ${n}) as i`);
    await before.db.execute(sql`insert into feedback (prediction_id, label, source, created_at, updated_at)
      select 'p-' || i, i % 3 = 0, 'bench', now(), now() from generate_series(1, ${n}) as i where i % ${every} = 0`);
    await before.db.execute(sql`insert into f1_windows (language, window_start, window_end, n, tp, fp, fn, tn, computed_at)
      select (array['en','de','fr','es','pt'])[1 + i % 5], now() - ((i + 1440) || ' minutes')::interval, now() - (i || ' minutes')::interval, 10, 4, 1, 1, 4, now() from generate_series(1, ${windows}) as i`);
    await before.db.execute(sql`insert into threshold_changes (created_at, actor, language, old_threshold, new_threshold, bundle_version)
      select now(), 'bench', (array['en','de','fr','es','pt'])[1 + i % 5], 0.5, 0.4 + (i % 10) / 100.0, 'bench' from generate_series(1, ${changes}) as i`);
    await before.db.execute(sql`analyze`);
    const fillMs = ms(t0);
    const from = new Date(Date.now() - 30 * 86_400_000), to = new Date(Date.now() + 60_000);
    // the previous version's confusion query (no attribute), on the same rows: best of three
    const count = (filter: string) => `count(*) filter (where ${filter})::int`;
    const oldConfusion = sql.raw(`select p.language, ${count('p.label and f.label')} as tp, ${count('p.label and not f.label')} as fp, ${count('not p.label and f.label')} as fn, ${count('not p.label and not f.label')} as tn
      from predictions p join feedback f on f.prediction_id = p.id where p.created_at >= '${from.toISOString()}' and p.created_at < '${to.toISOString()}' group by p.language order by p.language`);
    const best = async (f: () => Promise<unknown>) => {
      let b = Infinity;
      for (let k = 0; k < 3; k++) {
        const t = process.hrtime.bigint();
        await f();
        b = Math.min(b, ms(t));
      }
      return b;
    };
    const confusionBeforeMs = await best(() => before.db.execute(oldConfusion));
    await before.close();

    t0 = process.hrtime.bigint();
    const after = await createDb({ url: dbUrl.toString() }); // applies 0004 only
    const migrateMs = ms(t0);
    const repo = createRepository(after.db);
    await after.db.execute(sql`analyze`);
    const toxicity = await repo.confusionByLanguage(from, to);
    const confusionMs = await best(() => repo.confusionByLanguage(from, to));
    const labeled = toxicity.reduce((s, c) => s + c.tp + c.fp + c.fn + c.tn, 0);
    // the same rows as this version writes them: an insult score in the jsonb and an insult label beside toxicity's
    await after.db.execute(sql`update predictions set attributes = jsonb_build_object('insult', jsonb_build_object('score', score, 'threshold', 0.4, 'label', score >= 0.4))`);
    await after.db.execute(sql`insert into feedback (prediction_id, attribute, label, source, created_at, updated_at)
      select 'p-' || i, 'insult', i % 5 = 0, 'bench', now(), now() from generate_series(1, ${n}) as i where i % ${every} = 0`);
    await after.db.execute(sql`vacuum analyze predictions`);
    await after.db.execute(sql`analyze feedback`);
    const insultRows = await repo.confusionByLanguage(from, to, undefined, { attribute: 'insult' });
    const insultMs = await best(() => repo.confusionByLanguage(from, to, undefined, { attribute: 'insult' }));
    const toxicityWithAttributesMs = await best(() => repo.confusionByLanguage(from, to));
    const insultLabeled = insultRows.reduce((s, c) => s + c.tp + c.fp + c.fn + c.tn, 0);
    const [{ version }] = await executeRows<{ version: string }>(after.db, sql`select current_setting('server_version') as version`);
    await after.close();
    const result = { bench: 'migrate-attributes', postgres: version, predictions: n, feedback: Math.floor(n / every), f1_windows: windows, threshold_changes: changes, fill_ms: fillMs, migrate_0004_ms: migrateMs, toxicity_confusion_before_ms: confusionBeforeMs, toxicity_confusion_after_ms: confusionMs, labeled_read_back: labeled, insult_confusion_ms: insultMs, toxicity_confusion_with_attributes_ms: toxicityWithAttributesMs, insult_labeled_read_back: insultLabeled };
    if (insultLabeled !== Math.floor(n / every)) throw new Error(`bench migrate-attributes: ${Math.floor(n / every)} insult labels written, ${insultLabeled} read back`);
    if (labeled !== Math.floor(n / every)) throw new Error(`bench migrate-attributes: ${Math.floor(n / every)} labels written, ${labeled} read back as toxicity`);
    process.stdout.write(flags.json ? JSON.stringify(result) + '\n' : JSON.stringify(result, null, 2) + '\n');
    return 0;
  } finally {
    await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await admin.end();
    rmSync(old, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.exitCode = await run(process.argv.slice(2));
}
