/**
 * Moderators' labels for earlier predictions, from every API; they go through the write queue (src/db).
 *
 *   ToxScope / queue   the prediction id of a result
 *   OpenAI             the moderation response's id (modr-...) and the result's index (default 0): its
 *                      predictions are stored as `<modr id>:<index>` (src/http/routes/moderations.ts); a label may
 *                      name an OpenAI category instead of an attribute (the bundle's mapping picks the attribute)
 *   Perspective        comments:suggestscore sends the text, not an id: suggestScore() finds the prediction
 *                      by the text's sha256 within TOXSCOPE_FEEDBACK_MATCH_HOURS (see predictionForText)
 */
import { createHash } from 'node:crypto';
import { ToxScopeError, validationError } from '../errors.js';
import { TOXICITY } from '../head/attributes.js';
import type { FeedbackResult } from '../db/repository.js';
import type { ServiceDeps } from './deps.js';

/** Most items in one feedback call. */
export const MAX_FEEDBACK_ITEMS = 1000;

export interface FeedbackCall {
  /** `attribute`: which of the bundle's attributes the label is for (default toxicity) */
  items: readonly { id: string; index?: number; label: 0 | 1; attribute?: string; category?: string }[];
  /** who labeled (default 'api') */
  source?: string;
}

export interface FeedbackOutcome {
  id: string;
  attribute: string;
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
  const known = attributesOf(deps);
  const categories = deps.host.current().classifier.openaiCategories;
  const attributeOfItem = (i: FeedbackCall['items'][number], n: number) => {
    if (i.category === undefined) return feedbackAttribute(known, i.attribute, `items[${n}].attribute`);
    if (i.attribute !== undefined) throw validationError(`items[${n}]: give attribute or category, not both`, { field: `items[${n}].category` });
    const mapped = Object.hasOwn(categories, i.category) ? categories[i.category] : undefined;
    if (mapped === undefined)
      throw validationError(
        `items[${n}].category: '${i.category}' is not scored by this bundle (scored: ${Object.entries(categories).map(([c, a]) => `${c} <- ${a}`).join(', ')})`,
        { field: `items[${n}].category`, value: i.category },
      );
    return feedbackAttribute(known, mapped, `items[${n}].category`);
  };
  const items = call.items.map((i, n) => ({ predictionId: predictionIdOf(i, n), attribute: attributeOfItem(i, n), label: i.label === 1, source }));
  const results = await deps.predictions.recordFeedback(items);
  return results.map((r) => {
    const note = r.superseded ? 'a later label for this prediction was already stored and was kept' : NOTES[r.status];
    return { id: r.predictionId, attribute: r.attribute, status: r.status, ...(note && { note }) };
  });
}

/** The attributes the serving bundle scores (feedback for others would label nothing the service predicts). */
function attributesOf(deps: Pick<ServiceDeps, 'host'>): string[] {
  return deps.host.current().classifier.attributeNames;
}

/** The attribute a label is for: absent = toxicity; one the bundle does not score is refused (naming those it does). */
export function feedbackAttribute(known: readonly string[], attribute: string | undefined, field: string): string {
  if (attribute === undefined) return TOXICITY;
  if (!known.includes(attribute)) throw validationError(`${field}: unknown attribute '${attribute}': this bundle scores ${known.join(', ')}`, { field, value: attribute });
  return attribute;
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
  /** attribute -> the suggested probability; >= 0.5 labels the attribute as present (toxic, an insult, ...) */
  values: Readonly<Record<string, number>>;
  source?: string;
}

export interface SuggestScoreOutcome {
  /** 'stored' when every label was new, 'updated' when one replaced an earlier label, or 'unmatched' */
  status: FeedbackResult['status'] | 'unmatched';
  /** per attribute labeled: stored or updated */
  attributes?: Record<string, FeedbackResult['status']>;
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
  const attributes = Object.keys(call.values);
  if (attributes.length === 0) throw validationError('give a score for at least one attribute');
  const known = attributesOf(deps);
  for (const a of attributes) feedbackAttribute(known, a, 'attribute'); // refused before anything is looked up
  if (!deps.predictions || !deps.matchText) throw new ToxScopeError('unavailable', 'feedback needs the database, and none is configured for this instance');
  await deps.predictions.flush?.(); // a prediction made a moment ago may still be queued
  const sha = createHash('sha256').update(call.text, 'utf8').digest('hex');
  const since = new Date(Date.now() - deps.config.feedbackMatchHours * 3_600_000);
  // the match follows the first attribute given (toxicity when present): its newest unlabeled prediction
  const lead = attributes.includes(TOXICITY) ? TOXICITY : attributes[0];
  const match = await deps.matchText.predictionForText(sha, since, { attribute: lead });
  if (!match) return { status: 'unmatched', candidates: 0 };
  const source = call.source ?? 'perspective';
  const results = await deps.predictions.recordFeedback(attributes.map((attribute) => ({ predictionId: match.id, attribute, label: call.values[attribute] >= 0.5, source })));
  const status = results.some((r) => r.status === 'updated') ? 'updated' : results[0].status;
  return { status, attributes: Object.fromEntries(results.map((r) => [r.attribute, r.status])), predictionId: match.id, candidates: match.candidates };
}
