/** Prediction ids and rows for the database, shared by every entry point that classifies. */
import { createHash, randomUUID } from 'node:crypto';
import type { ClassifyOutput } from '../engine/classifier.js';
import type { NewPrediction } from '../db/schema.js';
import type { ServiceDeps } from './deps.js';

/**
 * One id per text. Rows go to the write queue (never awaited: the database may be away) unless `store`
 * is false. A queue refusing rows is logged; the answer is still given.
 */
export function recordPredictions(deps: ServiceDeps, requestId: string, texts: readonly string[], out: ClassifyOutput, store = true): string[] {
  const ids = texts.map(() => randomUUID());
  if (!store || !deps.predictions) return ids;
  const now = new Date();
  const rows: NewPrediction[] = out.results.map((r, i) => ({
    id: ids[i],
    requestId,
    createdAt: now,
    language: r.language.code,
    languageSource: r.language.source,
    score: r.score,
    threshold: r.threshold,
    label: r.toxic,
    bundleVersion: out.version,
    textSha256: createHash('sha256').update(texts[i], 'utf8').digest('hex'),
    text: deps.config.storeText ? texts[i] : null,
  }));
  try {
    deps.predictions.enqueuePredictions(rows);
  } catch (e) {
    deps.log?.warn('predictions not recorded', { requestId, error: (e as Error).message });
  }
  return ids;
}
