/** Prediction ids and rows for the database, shared by the three classification routes. */
import { createHash, randomUUID } from 'node:crypto';
import type { Context } from 'hono';
import type { ClassifyOutput } from '../engine/classifier.js';
import type { NewPrediction } from '../db/schema.js';
import type { AppDeps, BundleInfo } from './deps.js';

/**
 * One id per text. Rows go to the write queue (never awaited: the database may be away) unless `store`
 * is false. A queue refusing rows is logged; the answer is still given.
 */
export function recordPredictions(deps: AppDeps, c: Context, texts: readonly string[], out: ClassifyOutput, store = true): string[] {
  const ids = texts.map(() => randomUUID());
  if (!store || !deps.predictions) return ids;
  const now = new Date();
  const requestId = c.get('requestId');
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

/**
 * Headers on every scored response: timings as a standard Server-Timing header (milliseconds), the bundle
 * version, and, for a bundle on a synthetic backbone (the demo), a header saying its scores are not Qwen3's:
 * it reaches clients of the compatible APIs too, whose bodies have no place for it.
 */
export function setScoreHeaders(c: Context, out: ClassifyOutput, info: Pick<BundleInfo, 'syntheticBackbone'>): void {
  const t = out.timings;
  const f = (x: number) => x.toFixed(2);
  c.header('Server-Timing', `tokenize;dur=${f(t.tokenizeMs)}, queue;dur=${f(t.queueMs)}, inference;dur=${f(t.inferenceMs)}, total;dur=${f(t.totalMs)}`);
  c.header('X-Toxscope-Bundle-Version', out.version);
  if (info.syntheticBackbone) c.header('X-Toxscope-Synthetic-Backbone', 'true; scores measure the pipeline, not Qwen3 features');
}
