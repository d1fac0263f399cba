import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { executeRows } from '../src/db/client.js';
import { createRepository, type Repository } from '../src/db/repository.js';
import { DRIVERS, openTestDb, predictionRow, type TestDb } from './helpers/db.js';

describe.each(DRIVERS)('repository on %s', (driver) => {
  let t: TestDb;
  let repo: Repository;
  beforeAll(async () => {
    t = await openTestDb(driver);
    repo = createRepository(t.handle.db);
  });
  afterAll(() => t?.dispose());

  const feedbackRow = async (id: string) =>
    (await executeRows<{ label: boolean; source: string; created_at: unknown; updated_at: unknown }>(
      t.handle.db,
      sql`select label, source, created_at, updated_at from feedback where prediction_id = ${id}`,
    ))[0];

  it('inserts predictions idempotently: a repeated id is neither an error nor a second row', async () => {
    const a = predictionRow({ text: 'stored only when configured' });
    const b = predictionRow();
    expect(await repo.insertPredictions([a, b])).toBe(2);
    expect(await repo.insertPredictions([a, { ...b, score: 0.99 }, predictionRow()])).toBe(1);
    const rows = await executeRows<{ id: string; score: number; text: string | null }>(
      t.handle.db,
      sql`select id, score, text from predictions where id in (${a.id}, ${b.id}) order by id`,
    );
    expect(rows).toEqual([
      { id: a.id, score: 0.5, text: 'stored only when configured' },
      { id: b.id, score: 0.5, text: null }, // the first write won; the replayed one changed nothing
    ]);
  });

  it('feedback round trip: stored, then updated by a later label, unknown ids reported per item', async () => {
    const p = predictionRow({ label: true });
    const q = predictionRow();
    await repo.insertPredictions([p, q]);
    const t0 = new Date('2025-03-01T12:00:00Z');
    const t1 = new Date('2025-03-01T12:05:00Z');

    expect(
      await repo.recordFeedback([
        { predictionId: p.id, label: false, source: 'mod-a', at: t0 },
        { predictionId: 'no-such-prediction', label: true, source: 'mod-a', at: t0 },
        { predictionId: q.id, label: true, source: 'mod-a', at: t0 },
      ]),
    ).toEqual([
      { predictionId: p.id, attribute: 'toxicity', status: 'stored' },
      { predictionId: 'no-such-prediction', attribute: 'toxicity', status: 'unknown_id' },
      { predictionId: q.id, attribute: 'toxicity', status: 'stored' },
    ]);

    expect(await repo.recordFeedback([{ predictionId: p.id, label: true, source: 'mod-b', at: t1 }])).toEqual([
      { predictionId: p.id, attribute: 'toxicity', status: 'updated' },
    ]);
    const row = await feedbackRow(p.id);
    expect(row.label).toBe(true);
    expect(row.source).toBe('mod-b');
    expect(new Date(row.created_at as string).getTime()).toBe(t0.getTime()); // first feedback time is kept
    expect(new Date(row.updated_at as string).getTime()).toBe(t1.getTime());
  });

  it('an older label arriving late does not overwrite a newer one (latest wins) and says so', async () => {
    const p = predictionRow();
    await repo.insertPredictions([p]);
    const newer = new Date('2025-03-01T13:00:00Z');
    const older = new Date('2025-03-01T12:00:00Z');
    await repo.recordFeedback([{ predictionId: p.id, label: true, source: 'newer', at: newer }]);
    expect(await repo.recordFeedback([{ predictionId: p.id, label: false, source: 'older', at: older }])).toEqual([
      { predictionId: p.id, attribute: 'toxicity', status: 'updated', superseded: true },
    ]);
    expect((await feedbackRow(p.id)).source).toBe('newer');
  });

  it('the same id twice in one call: both accepted, the later item wins', async () => {
    const p = predictionRow();
    await repo.insertPredictions([p]);
    const at = new Date('2025-03-01T12:00:00Z');
    expect(
      await repo.recordFeedback([
        { predictionId: p.id, label: false, source: 'first', at },
        { predictionId: p.id, label: true, source: 'second', at },
      ]),
    ).toEqual([
      { predictionId: p.id, attribute: 'toxicity', status: 'stored' },
      { predictionId: p.id, attribute: 'toxicity', status: 'updated' },
    ]);
    const row = await feedbackRow(p.id);
    expect([row.label, row.source]).toEqual([true, 'second']);
  });

  it('replaying identical feedback changes nothing', async () => {
    const p = predictionRow();
    await repo.insertPredictions([p]);
    const item = { predictionId: p.id, label: true, source: 'mod', at: new Date('2025-03-01T12:00:00Z') };
    await repo.recordFeedback([item]);
    const before = await feedbackRow(p.id);
    await repo.recordFeedback([item]);
    expect(await feedbackRow(p.id)).toEqual(before);
  });

  it('counts confusion per language in SQL over prediction time [from, to), labeled predictions only', async () => {
    const from = new Date('2030-01-01T00:00:00Z');
    const to = new Date('2030-01-02T00:00:00Z');
    const inside = new Date('2030-01-01T06:00:00Z');
    const rows = [
      predictionRow({ createdAt: inside, language: 'xx', label: true }), //  tp
      predictionRow({ createdAt: inside, language: 'xx', label: true }), //  fp
      predictionRow({ createdAt: inside, language: 'xx', label: false }), // fn
      predictionRow({ createdAt: inside, language: 'yy', label: false }), // tn
      predictionRow({ createdAt: inside, language: 'yy', label: true }), //  unlabeled
      predictionRow({ createdAt: to, language: 'yy', label: true }), //      at `to`: outside
      predictionRow({ createdAt: from, language: 'yy', label: true }), //    at `from`: inside, tp
    ];
    await repo.insertPredictions(rows);
    const truth = [true, false, true, false, undefined, true, true];
    await repo.recordFeedback(
      rows.flatMap((r, i) => (truth[i] === undefined ? [] : [{ predictionId: r.id, label: truth[i]!, source: 'mod' }])),
    );
    expect(await repo.confusionByLanguage(from, to)).toEqual([
      { language: 'xx', tp: 1, fp: 1, fn: 1, tn: 0 },
      { language: 'yy', tp: 1, fp: 0, fn: 0, tn: 1 },
    ]);
    expect(await repo.confusionByLanguage(from, to, 'yy')).toEqual([{ language: 'yy', tp: 1, fp: 0, fn: 0, tn: 1 }]);
    const totals = await repo.feedbackTotals();
    expect(totals.xx).toBe(3);
    expect(totals.yy).toBe(3);
  });

  it('records the threshold audit and lists it newest first, per language', async () => {
    await repo.recordThresholdChange({ actor: 'alice', language: 'en', oldThreshold: null, newThreshold: 0.5, at: new Date('2025-01-01T00:00:00Z') });
    await repo.recordThresholdChange({ actor: 'bob', language: 'de', oldThreshold: 0.4, newThreshold: 0.45, reason: 'too many fp', at: new Date('2025-01-02T00:00:00Z') });
    const en2 = await repo.recordThresholdChange({ actor: 'alice', language: 'en', oldThreshold: 0.5, newThreshold: 0.6, reason: 'drift', at: new Date('2025-01-03T00:00:00Z') });
    expect(en2.id).toBeTypeOf('number');
    expect(en2.createdAt).toEqual(new Date('2025-01-03T00:00:00Z'));
    const all = await repo.listThresholdChanges();
    expect(all.map((c) => [c.actor, c.language, c.oldThreshold, c.newThreshold])).toEqual([
      ['alice', 'en', 0.5, expect.closeTo(0.6, 6)],
      ['bob', 'de', expect.closeTo(0.4, 6), expect.closeTo(0.45, 6)],
      ['alice', 'en', null, 0.5],
    ]);
    expect((await repo.listThresholdChanges({ language: 'en', limit: 1 })).map((c) => c.reason)).toEqual(['drift']);
  });

  it('saves F1 windows as upserts per (language, window) and returns the latest window per language', async () => {
    const w = (language: string, endIso: string, f1: number) => ({
      language,
      windowStart: new Date(new Date(endIso).getTime() - 3_600_000),
      windowEnd: new Date(endIso),
      n: 10, tp: 4, fp: 1, fn: 1, tn: 4,
      precision: 0.8, recall: 0.8, f1, baseline: 0.9, drift: f1 - 0.9,
      computedAt: new Date(endIso),
    });
    await repo.saveF1Windows([w('en', '2025-02-01T10:00:00Z', 0.8), w('en', '2025-02-01T11:00:00Z', 0.7), w('de', '2025-02-01T10:00:00Z', 0.6)]);
    await repo.saveF1Windows([w('en', '2025-02-01T11:00:00Z', 0.75)]); // recomputed: replaces, does not add
    const latest = await repo.latestF1Windows();
    expect(latest.map((r) => [r.language, r.windowEnd.toISOString(), r.f1])).toEqual([
      ['de', '2025-02-01T10:00:00.000Z', expect.closeTo(0.6, 6)],
      ['en', '2025-02-01T11:00:00.000Z', 0.75],
    ]);
    const count = await executeRows<{ n: number }>(t.handle.db, sql`select count(*)::int as n from f1_windows where language = 'en'`);
    expect(count[0].n).toBe(2);
    expect((await repo.latestF1Windows('de')).map((r) => r.language)).toEqual(['de']);
  });

  describe('the attribute dimension (insult, identity_attack, ... beside toxicity)', () => {
    const at = new Date('2025-06-01T10:00:00Z');
    const from = new Date('2025-06-01T00:00:00Z');
    const to = new Date('2025-06-02T00:00:00Z');
    const insult = (score: number, threshold = 0.4) => ({ score, threshold, label: score >= threshold });

    it("stores every scored attribute's score and decision with the prediction; rows without them stay readable", async () => {
      const a = predictionRow({ createdAt: at, language: 'sv', score: 0.7, threshold: 0.5, label: true, attributes: { insult: insult(0.3), identity_attack: { score: 0.9, threshold: 0.6, label: true } } });
      const b = predictionRow({ createdAt: at, language: 'sv' }); // toxicity only
      await repo.insertPredictions([a, b]);
      const rows = await executeRows<{ id: string; attributes: unknown }>(t.handle.db, sql`select id, attributes from predictions where id in (${a.id}, ${b.id}) order by id`);
      expect(rows).toEqual([
        { id: a.id, attributes: { insult: { score: 0.3, threshold: 0.4, label: false }, identity_attack: { score: 0.9, threshold: 0.6, label: true } } },
        { id: b.id, attributes: null },
      ]);
    });

    it('keeps one label per (prediction, attribute): labels of different attributes never replace each other', async () => {
      const p = predictionRow({ createdAt: at, language: 'nb', attributes: { insult: insult(0.8) } });
      await repo.insertPredictions([p]);
      expect(
        await repo.recordFeedback([
          { predictionId: p.id, label: false, source: 'mod' }, // toxicity (no attribute named)
          { predictionId: p.id, attribute: 'insult', label: true, source: 'mod' },
        ]),
      ).toEqual([
        { predictionId: p.id, attribute: 'toxicity', status: 'stored' },
        { predictionId: p.id, attribute: 'insult', status: 'stored' },
      ]);
      expect(await repo.recordFeedback([{ predictionId: p.id, attribute: 'insult', label: false, source: 'mod' }])).toEqual([{ predictionId: p.id, attribute: 'insult', status: 'updated' }]);
      const rows = await executeRows<{ attribute: string; label: boolean }>(t.handle.db, sql`select attribute, label from feedback where prediction_id = ${p.id} order by attribute`);
      expect(rows).toEqual([{ attribute: 'insult', label: false }, { attribute: 'toxicity', label: false }]);
      expect(await repo.feedbackTotals({ attribute: 'insult' })).toMatchObject({ nb: 1 });
    });

    it("counts confusion, labeled scores and score bins per attribute from that attribute's own score, decision and labels", async () => {
      // toxicity says toxic for all three; insult's decisions differ; one prediction never scored insult
      const rows = [
        predictionRow({ createdAt: at, language: 'fi', score: 0.9, label: true, attributes: { insult: insult(0.85) } }), // insult: predicted yes
        predictionRow({ createdAt: at, language: 'fi', score: 0.9, label: true, attributes: { insult: insult(0.15) } }), // insult: predicted no
        predictionRow({ createdAt: at, language: 'fi', score: 0.9, label: true }), // no insult score: not in insult's counts
      ];
      await repo.insertPredictions(rows);
      await repo.recordFeedback([
        { predictionId: rows[0].id, attribute: 'insult', label: true, source: 'mod' }, // tp
        { predictionId: rows[1].id, attribute: 'insult', label: true, source: 'mod' }, // fn
        { predictionId: rows[2].id, attribute: 'insult', label: true, source: 'mod' }, // no insult score: left out
        { predictionId: rows[0].id, label: false, source: 'mod' }, // toxicity: fp
      ]);
      expect(await repo.confusionByLanguage(from, to, 'fi', { attribute: 'insult' })).toEqual([{ language: 'fi', tp: 1, fp: 0, fn: 1, tn: 0 }]);
      expect(await repo.confusionByLanguage(from, to, 'fi')).toEqual([{ language: 'fi', tp: 0, fp: 1, fn: 0, tn: 0 }]);
      const scores = await repo.labeledScores(from, to, { language: 'fi', attribute: 'insult' });
      expect(scores.map((s) => [s.score, s.predicted, s.truth]).sort()).toEqual([
        [expect.closeTo(0.15, 6), false, true],
        [expect.closeTo(0.85, 6), true, true],
      ]);
      const bins = (await repo.scoreBins(from, to, 10, { attribute: 'insult' })).filter((b) => b.language === 'fi');
      expect(bins.map((b) => [b.bin, b.truth, b.n]).sort()).toEqual([[1, true, 1], [8, true, 1]]);
    });

    it('saves F1 windows per (attribute, language, window) and reads them per attribute', async () => {
      const w = (attribute: string | undefined, f1: number) => ({
        ...(attribute && { attribute }),
        language: 'is',
        windowStart: new Date('2025-06-01T09:00:00Z'),
        windowEnd: new Date('2025-06-01T10:00:00Z'),
        n: 10, tp: 4, fp: 1, fn: 1, tn: 4,
        precision: 0.8, recall: 0.8, f1, baseline: 0.9, drift: f1 - 0.9,
        computedAt: at,
      });
      await repo.saveF1Windows([w(undefined, 0.5), w('insult', 0.25)]);
      await repo.saveF1Windows([w('insult', 0.75)]); // recomputed: replaces insult's, leaves toxicity's
      expect((await repo.latestF1Windows('is')).map((r) => [r.attribute, r.f1])).toEqual([['toxicity', 0.5]]);
      expect((await repo.latestF1Windows('is', { attribute: 'insult' })).map((r) => [r.attribute, r.f1])).toEqual([['insult', 0.75]]);
      expect((await repo.f1WindowHistory(from, { language: 'is', attribute: 'insult' })).map((r) => r.f1)).toEqual([0.75]);
    });

    it('keeps threshold overrides and their audit per attribute', async () => {
      const c = (attribute: string | undefined, language: string, value: number) => ({ actor: 'ops', ...(attribute && { attribute }), language, oldThreshold: null, newThreshold: value, bundleVersion: 'attr-v1' });
      await repo.recordThresholdChanges([c(undefined, 'en', 0.6), c('insult', 'en', 0.3), c('insult', 'pooled', 0.35), c('identity_attack', 'de', 0.8)]);
      expect(await repo.thresholdOverrides('attr-v1')).toEqual({ en: 0.6 });
      expect(await repo.thresholdOverrides('attr-v1', 'insult')).toEqual({ en: 0.3, pooled: 0.35 });
      expect(await repo.attributeOverrides('attr-v1')).toEqual({ toxicity: { en: 0.6 }, insult: { en: 0.3, pooled: 0.35 }, identity_attack: { de: 0.8 } });
      const audit = await repo.listThresholdChanges({ attribute: 'insult' });
      expect(audit.map((r) => [r.attribute, r.language]).sort()).toEqual([['insult', 'en'], ['insult', 'pooled']]);
    });
  });

  it('answers a ping', async () => {
    await expect(repo.ping()).resolves.toBeUndefined();
  });
});
