import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executeRows } from '../src/db/client.js';
import { createRepository, type Repository } from '../src/db/repository.js';
import { createDriftMonitor, driftReport, type DriftSnapshot } from '../src/drift/monitor.js';
import { isToxScopeError } from '../src/errors.js';
import { DRIVERS, openTestDb, predictionRow, type TestDb } from './helpers/db.js';

const NOW = new Date('2025-06-10T12:00:00Z');
const HOUR = 3_600_000;
const BASELINES = { en: 0.9, de: 0.8, fr: 0.7 };

/**
 * The scripted stream: [predicted, true] per labeled prediction, all within the 24 h before NOW.
 *   en: tp 5, fp 2, fn 1, tn 4 (one of the tp was first labeled clean, then corrected: the latest label counts)
 *   de: tp 1, fn 3
 * plus noise that must not count: unlabeled predictions, and labeled ones older than 24 h.
 */
async function writeScriptedStream(writer: Repository, labeler: Repository): Promise<void> {
  const at = (hoursAgo: number) => new Date(NOW.getTime() - hoursAgo * HOUR);
  const labeled: Array<[string, boolean, boolean]> = [
    ...Array.from({ length: 5 }, () => ['en', true, true] as [string, boolean, boolean]),
    ['en', true, false], ['en', true, false],
    ['en', false, true],
    ['en', false, false], ['en', false, false], ['en', false, false], ['en', false, false],
    ['de', true, true],
    ['de', false, true], ['de', false, true], ['de', false, true],
  ];
  const rows = labeled.map(([language, predicted], i) => predictionRow({ language, label: predicted, createdAt: at(1 + i) }));
  const unlabeled = [predictionRow({ language: 'en', label: true, createdAt: at(2) }), predictionRow({ language: 'de', createdAt: at(3) })];
  const old = [predictionRow({ language: 'en', label: true, createdAt: at(25) }), predictionRow({ language: 'de', label: true, createdAt: at(24.001) })];
  await writer.insertPredictions([...rows, ...unlabeled, ...old]);

  const t0 = new Date(NOW.getTime() - 0.5 * HOUR);
  const t1 = new Date(NOW.getTime() - 0.25 * HOUR);
  await labeler.recordFeedback([{ predictionId: rows[0].id, label: false, source: 'mod', at: t0 }]); // corrected below
  await labeler.recordFeedback([
    ...rows.map((r, i) => ({ predictionId: r.id, label: labeled[i][2], source: 'mod', at: t1 })),
    { predictionId: old[0].id, label: false, source: 'mod', at: t1 },
    { predictionId: old[1].id, label: false, source: 'mod', at: t1 },
  ]);
}

// Hand computation from the script above.
const EXPECTED = {
  en: { n: 12, precision: 5 / 7, recall: 5 / 6, f1: 10 / 13, baseline: 0.9, drift: 10 / 13 - 0.9 },
  de: { n: 4, precision: 1, recall: 1 / 4, f1: 2 / 5, baseline: 0.8, drift: 2 / 5 - 0.8 },
  fr: { n: 0, precision: null, recall: null, f1: null, baseline: 0.7, drift: null },
};

function expectReportClose(actual: Record<string, Record<string, number | null>>, expected: typeof EXPECTED) {
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [lang, fields] of Object.entries(expected)) {
    for (const [k, v] of Object.entries(fields)) {
      if (v === null) expect(actual[lang][k], `${lang}.${k}`).toBeNull();
      else expect(actual[lang][k], `${lang}.${k}`).toBeCloseTo(v, 10);
    }
  }
}

describe.each(DRIVERS)('drift on %s', (driver) => {
  let t: TestDb;
  let replicaA: Repository;
  let replicaB: Repository;
  beforeAll(async () => {
    t = await openTestDb(driver);
    replicaA = createRepository(t.handle.db);
    replicaB = createRepository((await t.openAnother()).db);
    // Predictions through one replica, moderator feedback through the other.
    await writeScriptedStream(replicaA, replicaB);
  });
  afterAll(() => t?.dispose());

  it('GET /admin/drift body: F1 and drift for the scripted stream equal the hand computation', async () => {
    const report = await driftReport(replicaA, BASELINES, {}, NOW);
    expectReportClose(report.languages, EXPECTED);
    expect(Object.keys(report.languages.en).sort()).toEqual(['baseline', 'drift', 'f1', 'n', 'precision', 'recall']);
  });

  it('filters by language and window', async () => {
    const de = await driftReport(replicaA, BASELINES, { language: 'de', window: '24h' }, NOW);
    expect(Object.keys(de.languages)).toEqual(['de']);
    expect(de.languages.de.n).toBe(4);
    // The last 6 h hold en predictions made 1..5 h ago (4 tp + 1 tp corrected, all labeled toxic, predicted toxic).
    const recent = await driftReport(replicaA, BASELINES, { language: 'en', window: '330m' }, NOW);
    expect(recent.languages.en).toEqual({ n: 5, precision: 1, recall: 1, f1: 1, baseline: 0.9, drift: expect.closeTo(0.1, 10) });
    // A language with neither labels nor a baseline still answers, with n = 0.
    const none = await driftReport(replicaA, BASELINES, { language: 'sw' }, NOW);
    expect(none.languages).toEqual({ sw: { n: 0, precision: null, recall: null, f1: null, baseline: null, drift: null } });
  });

  it('rejects a malformed window or language with a validation error naming the field', async () => {
    for (const [query, field] of [[{ window: '1 day' }, 'window'], [{ language: 'en;drop' }, 'language']] as const) {
      const e = await driftReport(replicaA, BASELINES, query, NOW).catch((x: unknown) => x);
      expect(isToxScopeError(e) && e.kind).toBe('validation');
      expect(isToxScopeError(e) && e.details?.field).toBe(field);
    }
  });

  it('two replicas on one database compute the same drift, store one row per language and window, and alarm alike', async () => {
    const updates: DriftSnapshot[] = [];
    const options = { baselines: BASELINES, intervalMs: 60_000, tolerance: 0.1, minLabeled: 10, onUpdate: (s: DriftSnapshot) => updates.push(s) };
    // A few seconds apart, within the same 60 s step: the same aligned window [NOW - 24h, NOW).
    const a = createDriftMonitor({ ...options, repo: replicaA, now: () => new Date(NOW.getTime() + 2_000) });
    const b = createDriftMonitor({ ...options, repo: replicaB, now: () => new Date(NOW.getTime() + 41_000) });
    const sa = await a.runOnce();
    const sb = await b.runOnce();
    expect(sa.window).toEqual({ start: new Date(NOW.getTime() - 24 * HOUR), end: NOW });
    expect(sb.window).toEqual(sa.window);
    expect(sb.languages).toEqual(sa.languages);
    expectReportClose(sa.languages as never, EXPECTED);
    expect(sa.languages.en).toMatchObject({ tp: 5, fp: 2, fn: 1, tn: 4 });
    // en: |10/13 - 0.9| = 0.131 > 0.1 with 12 >= 10 labels. de: |0.4 - 0.8| > 0.1 but only 4 labels.
    expect(sa.alarms).toEqual(['en']);
    expect(sb.alarms).toEqual(['en']);
    expect(sa.feedbackTotals).toEqual(sb.feedbackTotals);
    expect(sa.feedbackTotals).toMatchObject({ en: 13, de: 5 });
    expect(updates).toEqual([sa, sb]);
    expect(a.latest()).toBe(sa);

    const stored = await executeRows<{ language: string; n: number; f1: number; drift: number }>(
      t.handle.db,
      sql`select language, n, f1, drift from f1_windows where window_end = ${NOW.toISOString()} order by language`,
    );
    expect(stored.map((r) => [r.language, r.n])).toEqual([['de', 4], ['en', 12]]); // fr has no labels: no row
    expect(stored[1].f1).toBeCloseTo(10 / 13, 6);
    const latest = await replicaB.latestF1Windows('en');
    expect(latest[0].drift).toBeCloseTo(10 / 13 - 0.9, 6);
  });

  it('a scheduled monitor reports failures to onError, keeps its last snapshot, and stops', async () => {
    let fail = false;
    const errors: unknown[] = [];
    const flaky: Repository = {
      ...replicaA,
      confusionByLanguage: (from, to, l) => (fail ? Promise.reject(new Error('db away')) : replicaA.confusionByLanguage(from, to, l)),
    };
    const m = createDriftMonitor({ repo: flaky, baselines: BASELINES, intervalMs: 3_600_000, now: () => NOW, onError: (e) => errors.push(e) });
    const first = await m.runOnce();
    fail = true;
    await expect(m.runOnce()).rejects.toThrow('db away');
    expect(m.latest()).toBe(first);
    m.start(); // runs immediately; its failure goes to onError
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    m.stop();
    expect(errors.map((e) => (e as Error).message)).toEqual(['db away']);
  });
});
