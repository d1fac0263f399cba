/**
 * Operating points at the deployment's prevalence through the admin API, on the real database layer (in-memory
 * PGlite with the project's migrations): a change shifts calibration and thresholds, is audited, and is replayed
 * onto a freshly loaded bundle of the same version; the view estimates each language's share from feedback.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { applyOverrides } from '../src/service/threshold-sync.js';
import { estimatePrevalence } from '../src/head/prior.js';
import { ADMIN_TOKEN, buildTestApp, loadTinyBundle, post, request, type TestApp } from './helpers/app.js';
import { openTestDb, type TestDb } from './helpers/db.js';

let t: TestApp;
let db: TestDb;
let repo: Repository;
let queue: WriteQueue;
const spillDir = mkdtempSync(join(tmpdir(), 'toxscope-prevalence-spill-'));

beforeAll(async () => {
  db = await openTestDb('pglite');
  repo = createRepository(db.handle.db);
  queue = new WriteQueue({ repo, journalDir: join(spillDir, 'journal'), flushDelayMs: 1 });
  t = await buildTestApp({ env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN }, deps: { predictions: queue, audit: repo, review: repo } });
});
afterAll(async () => {
  await t?.close();
  await queue?.close();
  await db?.dispose();
  rmSync(spillDir, { recursive: true, force: true });
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };
const score = async (text: string) => (await (await post(t.app, '/v1/classify', { texts: [text], language: 'en' })).json()).results[0];

describe('PUT /admin/prevalence', () => {
  it('shifts calibration to the new share, re-chooses thresholds at it, audits both, and survives a reload', async () => {
    const text = 'you are a stupid idiot';
    const before = await score(text);
    const view0 = await (await request(t.app, '/admin/prevalence', { headers: auth })).json();
    expect(view0.sample.pooled).toBeGreaterThan(0);
    const res = await request(t.app, '/admin/prevalence', { method: 'PUT', headers: auth, body: JSON.stringify({ prevalence: { en: 0.05 }, actor: 'ops' }) });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.deployment.per_language).toEqual({ en: 0.05 });
    const after = await score(text);
    expect(after.score).toBeLessThan(before.score); // rarer toxicity: lower probability for the same text
    const sample = view0.sample.per_language.en ?? view0.sample.pooled;
    const logit = (p: number) => Math.log(p / (1 - p));
    expect(logit(after.score) - logit(before.score)).toBeCloseTo(logit(0.05) - logit(sample), 4);

    const audit = await (await request(t.app, '/admin/audit', { headers: auth })).json();
    expect(audit.changes.some((c: { language: string; new: number }) => c.language === 'prevalence:en' && Math.abs(c.new - 0.05) < 1e-12)).toBe(true);

    // a fresh load of the same bundle version replays the prevalence, then the thresholds it moved
    const fresh = await loadTinyBundle(join(t.dir, 'v1'), t.config);
    try {
      expect((await applyOverrides(fresh.classifier, repo)).status).toBe('changed');
      const again = (await fresh.classifier.classify({ texts: [text], language: 'en' })).results[0];
      expect(again.score).toBeCloseTo(after.score, 9);
      expect(again.threshold).toBeCloseTo(after.threshold, 12);
    } finally {
      await fresh.classifier.close();
    }
  });

  it('refuses shares outside (0, 1) with a message', async () => {
    for (const prevalence of [{ en: 0 }, { en: 1.5 }, {}]) {
      const res = await request(t.app, '/admin/prevalence', { method: 'PUT', headers: auth, body: JSON.stringify({ prevalence }) });
      expect(res.status, JSON.stringify(prevalence)).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
  });

  it('estimates the share of each language from feedback, weighting reviewed predictions by all predictions of their score bin', async () => {
    const texts = ['you idiot', 'have a nice day', 'shut up moron', 'thanks a lot', 'lovely weather'];
    const out = await (await post(t.app, '/v1/classify', { texts, language: 'en' })).json();
    await queue.flush();
    await post(t.app, '/v1/feedback', { items: out.results.slice(0, 3).map((r: { id: string }, i: number) => ({ id: r.id, label: i === 1 ? 0 : 1 })) });
    await queue.flush();
    const view = await (await request(t.app, '/admin/prevalence', { headers: auth })).json();
    const en = view.feedback_estimate.en;
    expect(en.predictions).toBeGreaterThanOrEqual(5);
    expect(en.labeled).toBeGreaterThanOrEqual(3);
    expect(en.share).toBeGreaterThan(0);
    expect(en.share).toBeLessThan(1);
    // the estimator: unlabeled bins count at their calibrated score, labeled ones at their (smoothed) labeled share
    expect(estimatePrevalence([{ bin: 19, toxic: 9, benign: 0, unlabeled: 0 }, { bin: 0, toxic: 0, benign: 0, unlabeled: 90 }], 20).share).toBeCloseTo((9 * (9 + 0.975) / 10 + 90 * 0.025) / 99, 12);
  });
});
