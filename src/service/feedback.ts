/**
 * Moderators' labels for earlier predictions, from every API; they go through the write queue (src/db).
 *
 *   ToxScope / queue   the prediction id of a result
 *   OpenAI             the moderation response's id (modr-...) and the result's index (default 0): its
 *                      predictions are stored as `<modr id>:<index>` (src/http/routes/moderations.ts)
 *   Perspective        comments:suggestscore sends the text, not an id: suggestScore() finds the prediction
 *                      by the text's sha256 within TOXSCOPE_FEEDBACK_MATCH_HOURS (see predictionForText)
 */
import { createHash } from 'node:crypto';
import { ToxScopeError, validationError } from '../errors.js';
import type { FeedbackResult } from '../db/repository.js';
import type { ServiceDeps } from './deps.js';

/** Most items in one feedback call. */
export const MAX_FEEDBACK_ITEMS = 1000;

export interface FeedbackCall {
  items: readonly { id: string; index?: number; label: 0 | 1 }[];
  /** who labeled (default 'api') */
  source?: string;
}

export interface FeedbackOutcome {
  id: string;
  status: FeedbackResult['status'];
  note?: string;
}

const NOTES = {
  stored: undefined,
  updated: 'replaced an earlier label for this prediction: the latest wins',
  unknown_id: 'no prediction with this id',
} as const;

export async function recordFeedback(deps: ServiceDeps, call: FeedbackCall): Promise<FeedbackOutcome[]> {
  if (call.items.length > MAX_FEEDBACK_ITEMS)
    throw new ToxScopeError('payload_too_large', `${call.items.length} feedback items in one request, more than the limit of ${MAX_FEEDBACK_ITEMS}`);
  if (!deps.predictions) throw new ToxScopeError('unavailable', 'feedback needs the database, and none is configured for this instance');
  const source = call.source ?? 'api';
  const results = await deps.predictions.recordFeedback(call.items.map((i, n) => ({ predictionId: predictionIdOf(i, n), label: i.label === 1, source })));
  return results.map((r) => {
    const note = r.superseded ? 'a later label for this prediction was already stored and was kept' : NOTES[r.status];
    return { id: r.predictionId, status: r.status, ...(note && { note }) };
  });
}

const MODERATION_ID = /^modr-[0-9a-f]{32}$/;

/** The prediction ids of an OpenAI moderation response's results. */
export function moderationPredictionIds(moderationId: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${moderationId}:${i}`);
}

function predictionIdOf(item: { id: string; index?: number }, n: number): string {
  if (MODERATION_ID.test(item.id)) return `${item.id}:${item.index ?? 0}`;
  if (item.index !== undefined) throw validationError(`items[${n}].index: only a moderation id (modr-...) has results to choose from; give the prediction id itself`);
  return item.id;
}

export interface SuggestScoreCall {
  text: string;
  /** the suggested probability of the attribute; >= 0.5 is a toxic label */
  value: number;
  source?: string;
}

export interface SuggestScoreOutcome {
  status: FeedbackResult['status'] | 'unmatched';
  predictionId?: string;
  /** predictions of this text in the window (more than one: the label went to the newest unlabeled one) */
  candidates: number;
}

/**
 * Perspective's comments:suggestscore as feedback: the prediction of the same text (sha256) made within
 * TOXSCOPE_FEEDBACK_MATCH_HOURS. Ambiguity (the text classified several times): the newest prediction without
 * feedback gets the label, so repeated verdicts on repeated posts label them one by one; when all have feedback,
 * the newest is updated. No prediction in the window (never scored, scored with doNotStore, or too old):
 * 'unmatched', nothing stored.
 */
export async function suggestScore(deps: ServiceDeps, call: SuggestScoreCall): Promise<SuggestScoreOutcome> {
  if (!deps.predictions || !deps.matchText) throw new ToxScopeError('unavailable', 'feedback needs the database, and none is configured for this instance');
  await deps.predictions.flush?.(); // a prediction made a moment ago may still be queued
  const sha = createHash('sha256').update(call.text, 'utf8').digest('hex');
  const since = new Date(Date.now() - deps.config.feedbackMatchHours * 3_600_000);
  const match = await deps.matchText.predictionForText(sha, since);
  if (!match) return { status: 'unmatched', candidates: 0 };
  const [result] = await deps.predictions.recordFeedback([{ predictionId: match.id, label: call.value >= 0.5, source: call.source ?? 'perspective' }]);
  return { status: result.status, predictionId: match.id, candidates: match.candidates };
}
