/** Prediction ids and rows for the database, shared by every entry point that classifies. */
import { createHash, randomUUID } from 'node:crypto';
import type { ClassifyOutput } from '../engine/classifier.js';
import { DEFAULT_ATTRIBUTE, type NewPrediction, type StoredAttributeScore } from '../db/schema.js';
import { ToxScopeError } from '../errors.js';
import type { ServiceDeps } from './deps.js';

export interface RecordOptions {
  /** false: nothing is stored; ids are still given (default true) */
  store?: boolean;
  /** the ids to use, one per text (derived from a queue message, so a redelivery stores nothing twice); default random */
  ids?: readonly string[];
  /** fail when there is no database to keep the rows (a queue consumer must not acknowledge then) */
  required?: boolean;
}

/**
 * One id per text. Rows go to the write queue unless `store` is false: never waiting for the database (it may
 * be away), but on disk (the queue's journal) when this returns, so an answer is only sent for rows that are
 * kept. A queue refusing rows (its journal full or not writable) fails the request with its error (429 or
 * 503): an answer whose prediction ids were never kept would break the feedback that refers to them.
 * `ids` (a queue message's derived ids) make a repeated call store nothing twice.
 */
export function recordPredictions(deps: ServiceDeps, requestId: string, texts: readonly string[], out: ClassifyOutput, options: RecordOptions = {}): string[] {
  const { store = true, required = false } = options;
  if (options.ids && options.ids.length !== texts.length) throw new Error(`recordPredictions: ${options.ids.length} ids for ${texts.length} texts`);
  const ids = options.ids ? [...options.ids] : texts.map(() => randomUUID());
  if (!store) return ids;
  if (!deps.predictions) {
    if (required) throw new ToxScopeError('unavailable', 'predictions cannot be recorded: no database is configured for this instance');
    return ids;
  }
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
    attributes: otherAttributes(r.attributes),
    bundleVersion: out.version,
    textSha256: createHash('sha256').update(texts[i], 'utf8').digest('hex'),
    // PostgreSQL text cannot hold NUL: the stored copy has U+FFFD in its place (the hash is of the text as sent)
    text: deps.config.storeText ? texts[i].replaceAll('\0', '\uFFFD') : null,
  }));
  try {
    deps.predictions.enqueuePredictions(rows);
  } catch (e) {
    deps.log?.warn('predictions not recorded: the request fails', { requestId, error: (e as Error).message });
    throw e;
  }
  return ids;
}

/** Every scored attribute but toxicity (its own columns), as stored in predictions.attributes; null when there is none. */
function otherAttributes(scored: ClassifyOutput['results'][number]['attributes'] | undefined): Record<string, StoredAttributeScore> | null {
  const out: Record<string, StoredAttributeScore> = {};
  for (const [name, a] of Object.entries(scored ?? {})) if (name !== DEFAULT_ATTRIBUTE) out[name] = { score: a.score, threshold: a.threshold, label: a.toxic };
  return Object.keys(out).length > 0 ? out : null;
}
