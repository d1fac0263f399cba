/**
 * A service with history for the admin page tests: the tiny real bundle (test/helpers/app.ts) on an in-memory
 * PGlite, real posts from ../shared/data/train classified through POST /v1/classify with their language,
 * the posts' true labels sent to POST /v1/feedback in three rounds, and the drift monitor run after each
 * round (one stored F1 window per round and language, a minute apart).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRepository, type Repository } from '../src/db/repository.js';
import { WriteQueue } from '../src/db/write-queue.js';
import { createDriftMonitor, driftReport } from '../src/drift/monitor.js';
import { ADMIN_TOKEN, buildTestApp, post, type TestApp } from './helpers/app.js';
import { goldensDir } from './helpers/goldens.js';
import { openTestDb, type TestDb } from './helpers/db.js';

export const BASELINES = { en: 0.8, de: 0.7 };

export interface Post {
  text: string;
  label: number;
  lang: string;
}

/** perClass toxic and clean posts of one file, skipping the first 200 of each class (the test head trains on the first 60). */
function posts(file: string, perClass: number): Post[] {
  const rows = readFileSync(join(goldensDir, '..', 'data', 'train', file), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Post);
  return [0, 1].flatMap((label) => rows.filter((r) => r.label === label).slice(200, 200 + perClass));
}

export interface AdminUiFixture {
  t: TestApp;
  repo: Repository;
  /** every classified post with its prediction id and score */
  predictions: (Post & { id: string; score: number })[];
  close(): Promise<void>;
}

export async function adminUiFixture(perClass = 24): Promise<AdminUiFixture> {
  const db: TestDb = await openTestDb('pglite');
  const repo = createRepository(db.handle.db);
  const spillDir = mkdtempSync(join(tmpdir(), 'toxscope-admin-ui-spill-'));
  const queue = new WriteQueue({ repo, journalDir: join(spillDir, 'journal'), flushDelayMs: 1 });
  const t = await buildTestApp({
    // alarms need this many labeled predictions in a window: the fixture's rounds hold about 16 per language
    env: { TOXSCOPE_ADMIN_TOKEN: ADMIN_TOKEN, TOXSCOPE_DRIFT_MIN_LABELED: '10' },
    deps: { predictions: queue, audit: repo, review: repo, drift: (q) => driftReport(repo, BASELINES, q) },
  });

  const predictions: AdminUiFixture['predictions'] = [];
  for (const [file, lang] of [['davidson_en.jsonl', 'en'], ['germeval2018_de_train.jsonl', 'de']] as const) {
    const batch = posts(file, perClass);
    const res = await post(t.app, '/v1/classify', { texts: batch.map((p) => p.text), language: lang });
    if (res.status !== 200) throw new Error(`classify ${lang}: ${res.status} ${await res.text()}`);
    const body = await res.json();
    body.results.forEach((r: { id: string; score: number }, i: number) => predictions.push({ ...batch[i], lang, id: r.id, score: r.score }));
  }
  await queue.flush();

  const start = Date.now();
  const rounds = 3;
  for (let round = 0; round < rounds; round++) {
    const items = predictions.filter((_, i) => i % rounds === round).map((p) => ({ id: p.id, label: p.label }));
    const res = await post(t.app, '/v1/feedback', { items });
    if (res.status !== 202) throw new Error(`feedback: ${res.status} ${await res.text()}`);
    await queue.flush();
    const at = new Date(start + (round + 1) * 60_000);
    await createDriftMonitor({ repo, baselines: BASELINES, windowMs: 3_600_000, intervalMs: 60_000, now: () => at }).runOnce();
  }

  return {
    t,
    repo,
    predictions,
    async close() {
      await t.close();
      await queue.close();
      await db.dispose();
      rmSync(spillDir, { recursive: true, force: true });
    },
  };
}
